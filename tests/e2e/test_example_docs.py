"""The whole path on real, messy corpora: ingest all of example-docs and parser-extras, re-run, serve, ask.

Ingesting example-docs embeds thousands of chunks (minutes on 2 cores), so it happens once per
session in a fixture and every test here reads its result.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import yaml
from e2e_server import enclave_server
from openai import OpenAI

from enclave.flows import IngestReport, index_path, ingest
from enclave.indexes import ChunkStore, EdgeIndex, SyncLedger
from enclave.server.authentication import api_key_hash
from enclave.settings import ApiKeySettings, AuthSettings, ServerSettings, Settings, SourceSettings

pytestmark = pytest.mark.e2e

SOURCE = "example-docs"
KEY = "enc-e2e-example-docs"
EXTRAS = "parser-extras"  # corrupt, encrypted and odd PDFs and DOCX from pdfminer.six, pypdf, python-docx


@pytest.fixture(scope="session")
def example_docs_setup(corpora, tmp_path_factory, embedder):
    """Ingest example-docs and parser-extras twice into a fresh embedded index; returns (settings, config
    file, first and second example-docs reports, its ledger, its points, the parser-extras reports)."""
    root = tmp_path_factory.mktemp("example-docs")
    settings = Settings(
        data_dir=root / "data",
        sources=[SourceSettings(name=SOURCE, path=corpora / "example-docs", groups=["everyone"]),
                 SourceSettings(name=EXTRAS, path=corpora / "parser-extras", groups=["everyone"])],
        server=ServerSettings(auth=AuthSettings(
            api_keys=[ApiKeySettings(principal="e2e", groups=["everyone"], sha256=api_key_hash(KEY))])),
    )
    config = root / "enclave.yaml"
    config.write_text(yaml.safe_dump(json.loads(settings.model_dump_json())), encoding="utf-8")
    # the ingest flow, as a deployment runs it: a settings file, the index opened and closed by the run
    first, extras_first = ingest(config_file=str(config))
    second, extras_second = ingest(config_file=str(config))
    index = EdgeIndex(index_path(settings), embedder.dimension)
    try:
        store, sync = ChunkStore(index), SyncLedger(index)
        ledger = sync.entries(SOURCE)
        points = store.count(source=SOURCE)
        extras = (extras_first, extras_second, sync.entries(EXTRAS), store.count(source=EXTRAS), sync.runs(EXTRAS))
    finally:
        index.close()
    return settings, config, first, second, ledger, points, extras


def _files(corpora: Path, source: str = SOURCE) -> set[str]:
    root = corpora / source
    return {
        f"{source}:{p.relative_to(root).as_posix()}"
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def test_every_file_is_indexed_or_has_a_reason(example_docs_setup, corpora):
    _, _, first, _, ledger, points, _ = example_docs_setup
    first: IngestReport
    by_id = {o.doc_id: o for o in first.outcomes}
    assert len(by_id) == len(first.outcomes), "a document was reported twice"
    assert set(by_id) == _files(corpora)
    for outcome in first.outcomes:
        assert outcome.status in {"indexed", "skipped", "failed"}, outcome
        if outcome.status == "indexed":
            assert outcome.chunks > 0, outcome
        else:
            assert outcome.reason, f"{outcome.doc_id} {outcome.status} without a reason"
    counts = first.counts()
    assert counts["indexed"] >= 150, counts
    # the ledger agrees with the report and the index holds exactly the ledger's chunks
    assert set(ledger) == set(by_id)
    assert sum(e.chunks for e in ledger.values()) == points == first.chunks_embedded
    # known broken files are accounted for with the right reason
    assert by_id[f"{SOURCE}:password_protected.xlsx"].reason == "encrypted"
    assert by_id[f"{SOURCE}:empty.txt"].status == "skipped"
    assert by_id[f"{SOURCE}:CantinaBand3.wav"].reason == "unsupported type"
    # images and scans by OCR, legacy Office and OpenDocument files through LibreOffice (where installed:
    # `make test` installs both; without them these are skipped as "no OCR engine" / "no office converter")
    if shutil.which("tesseract"):
        for name in ("img/DA-1p.png", "img/DA-1p.heic", "img/layout-parser-paper-combined.tiff", "pdf/loremipsum-flat.pdf"):
            assert by_id[f"{SOURCE}:{name}"].status == "indexed", by_id[f"{SOURCE}:{name}"]
        assert by_id[f"{SOURCE}:img/example.jpg"].reason == "no text"  # a photo without writing
    if shutil.which("soffice"):
        for name in ("fake.doc", "fake-doc.rtf", "fake-power-point.ppt", "fake.odt", "language-docs/eng_spa_mult.doc"):
            assert by_id[f"{SOURCE}:{name}"].status == "indexed", by_id[f"{SOURCE}:{name}"]
    if shutil.which("tesseract") and shutil.which("soffice"):
        unsupported = sorted(d for d, o in by_id.items() if o.reason == "unsupported type")
        assert unsupported == [f"{SOURCE}:CantinaBand3.wav"], unsupported


def test_parser_extras_every_file_is_accounted_for(example_docs_setup, corpora):
    *_, (first, second, ledger, points, runs) = example_docs_setup
    by_id = {o.doc_id: o for o in first.outcomes}
    assert set(by_id) == _files(corpora, EXTRAS) and len(by_id) == len(first.outcomes)
    for outcome in first.outcomes:
        assert outcome.status in {"indexed", "skipped", "failed"}, outcome
        assert outcome.status == "indexed" or outcome.reason, f"{outcome.doc_id} {outcome.status} without a reason"
    assert set(ledger) == set(by_id) and sum(e.chunks for e in ledger.values()) == points == first.chunks_embedded
    # a PDF that needs a user password fails as encrypted; one with an empty password is read
    for name in ("pypdf-resources/encryption/r4-user-password.pdf", "pypdf-resources/libreoffice-writer-password.pdf",
                 "pdfminer-samples/encryption/aes-256.pdf"):
        assert (by_id[f"{EXTRAS}:{name}"].status, by_id[f"{EXTRAS}:{name}"].reason) == ("failed", "encrypted"), name
    assert by_id[f"{EXTRAS}:pypdf-resources/encryption/r6-empty-password.pdf"].status == "indexed"
    assert by_id[f"{EXTRAS}:pdfminer-samples/zen_of_python_corrupted.pdf"].status == "indexed"  # pdfminer repairs it
    assert first.counts()["indexed"] >= 100, first.counts()
    # each run leaves a record for `enclave status`, newest first
    assert [r.counts for r in runs] == [second.counts(), first.counts()]


def test_a_second_run_embeds_nothing(example_docs_setup):
    _, _, first, second, _, _, (extras_first, extras_second, *_) = example_docs_setup
    for before, after in ((first, second), (extras_first, extras_second)):
        assert after.chunks_embedded == 0
        # indexed documents are unchanged; known failures and skips are reported again, not retried
        expected = {"unchanged" if s == "indexed" else s: n for s, n in before.counts().items()}
        assert after.counts() == expected


def test_served_answers_cite_the_right_documents(example_docs_setup, tmp_path):
    _, config, *_ = example_docs_setup
    with enclave_server(config, tmp_path / "serve.log") as url:
        client = OpenAI(base_url=f"{url}/v1", api_key=KEY)
        assert [m.id for m in client.models.list()] == ["enclave", "enclave/ollama", "enclave/extractive"]

        completion = client.chat.completions.create(
            model="enclave", messages=[{"role": "user", "content": "Where was the footballer Iwan Roberts born?"}]
        )
        content = completion.choices[0].message.content
        assert "Bangor" in content
        citations = completion.model_extra["citations"]
        assert any(c["uri"].endswith("/norwich-city.txt") for c in citations)

        stream = client.chat.completions.create(
            model="enclave", stream=True,
            messages=[{"role": "user", "content": "What will there be at the first annual family day?"}],
        )
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert "face painting" in streamed and "family-day.eml" in streamed

        body = httpx.post(f"{url}/v1/ask", json={"question": "How many Stanley Cups have the Maple Leafs won?"},
                          timeout=60, headers={"Authorization": f"Bearer {KEY}"}).json()
        assert "13" in body["answer"]
        assert any("stanley-cups" in c["uri"] for c in body["citations"])
