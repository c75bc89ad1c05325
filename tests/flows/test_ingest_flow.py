"""The ingest flows: JSON-able parameters only (a settings file, source names, a folder), the pipeline run
inside a Prefect flow run, the ``ingest-report`` artifact, and ``ingest_source`` inside a flow of one's own."""

from __future__ import annotations

import asyncio
import json

import pytest
from prefect import flow
from settings_files import write_settings

from enclave.flows import ProgressKind, index_path, ingest, ingest_source, reporting_progress
from enclave.indexes import ChunkStore, EdgeIndex, SyncLedger
from enclave.settings import Settings, SourceSettings


@pytest.fixture
def config(tmp_path) -> tuple[str, Settings]:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nThe alpha team ships sensors on Tuesdays.\n", encoding="utf-8")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    settings = Settings(data_dir=tmp_path / "data", sources=[SourceSettings(name="docs", path=docs, groups=["g"])])
    return write_settings(settings, tmp_path), settings


def _artifacts(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["ingest-report"]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))

    return asyncio.run(read())


def test_the_flow_syncs_a_source_from_a_settings_file_and_publishes_its_report(config):
    config_file, settings = config
    state = ingest(config_file=config_file, return_state=True)
    [report] = state.result()
    assert report.source == "docs" and report.counts() == {"indexed": 1, "failed": 1}
    [artifact] = _artifacts(state.state_details.flow_run_id)
    [row] = artifact.data if isinstance(artifact.data, list) else json.loads(artifact.data)
    assert (row["source"], row["indexed"], row["failed"], row["chunks_embedded"]) == ("docs", 1, 1, report.chunks_embedded)
    assert "docs:broken.pdf: failed" in artifact.description
    index = EdgeIndex(index_path(settings))  # the run closed the index it opened
    try:
        assert ChunkStore(index).count(source="docs") == report.chunks_embedded
        assert SyncLedger(index).runs("docs")[0].counts == {"indexed": 1, "failed": 1}
    finally:
        index.close()


def test_parameters_are_json_and_validated(config):
    config_file, _ = config
    assert json.loads(json.dumps(ingest.serialize_parameters({"source": "docs", "config_file": config_file}))) == {
        "source": "docs", "config_file": config_file}
    assert set(ingest.parameters.properties) == {"source", "path", "config_file", "retry_failed"}
    assert set(ingest_source.parameters.properties) == {"source", "config_file", "retry_failed"}


def test_an_unknown_source_and_a_missing_folder_raise(config, tmp_path):
    config_file, _ = config
    with pytest.raises(KeyError, match="no source named 'nope'"):
        ingest(source="nope", config_file=config_file)
    with pytest.raises(FileNotFoundError):
        ingest(path=str(tmp_path / "missing"), config_file=config_file)


def test_a_folder_is_an_ad_hoc_source_named_after_it(config, tmp_path):
    config_file, _ = config
    other = tmp_path / "Other Folder"
    other.mkdir()
    (other / "note.txt").write_text("A note about calibration intervals of twelve months.", encoding="utf-8")
    [report] = ingest(path=str(other), config_file=config_file)
    assert report.source == "Other-Folder"
    assert {o.doc_id: str(o.status) for o in report.outcomes} == {"Other-Folder:note.txt": "indexed"}


def test_ingest_source_in_a_flow_of_ones_own_reports_progress_to_the_caller(config):
    config_file, _ = config
    events = []

    @flow
    def nightly(config_file: str) -> dict[str, int]:
        return ingest_source("docs", config_file=config_file).counts()

    with reporting_progress(events.append):
        first = nightly(config_file)
    second = nightly(config_file)  # outside the block: nobody is told
    assert first == {"indexed": 1, "failed": 1} and second == {"unchanged": 1, "failed": 1}
    assert sum(e.amount for e in events if e.kind == ProgressKind.PLANNED) == 2
    assert sum(e.amount for e in events if e.kind == ProgressKind.DOCUMENTS) == 2
    assert sum(e.amount for e in events if e.kind == ProgressKind.CHUNKS) >= 1
