"""IngestPipeline: incremental sync of a small folder that changes between runs, on each backend, outside
any Prefect flow run (the flow wrapping it: tests/flows/test_ingest_flow.py)."""

from __future__ import annotations

import os

import pytest
from qdrant_client import QdrantClient

from enclave.contracts import point_id
from enclave.flows import IngestPipeline, ProgressEvent, ProgressKind, index_path
from enclave.indexes import ChunkStore, EdgeIndex, ServerIndex, SyncLedger
from enclave.settings import Settings, SourceSettings

# qdrant-client's local mode warns that payload indexes are no-ops there; the server honours them
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

LONG = "\n\n".join(f"Paragraph {i}: " + " ".join(f"word{i}x{j}" for j in range(120)) for i in range(12))


class Index:
    """The test's view of the index the pipeline writes: chunks and ledger over one backend."""

    def __init__(self, backend) -> None:
        self.backend, self.store, self.ledger = backend, ChunkStore(backend), SyncLedger(backend)


@pytest.fixture(params=["edge", "server"])
def folder_and_index(request, tmp_path, embedder):
    """A small folder and an index on each backend (qdrant-client's in-memory mode stands in for a server)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nThe alpha team ships sensors on Tuesdays.\n", encoding="utf-8")
    (docs / "long.md").write_text("# Long\n\n" + LONG, encoding="utf-8")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    settings = Settings(data_dir=tmp_path / "data", sources=[SourceSettings(name="docs", path=docs, groups=["g"])])
    if request.param == "server":
        backend = ServerIndex(QdrantClient(":memory:"), "enclave", embedder.dimension)
    else:
        backend = EdgeIndex(index_path(settings), embedder.dimension)
    yield docs, settings, Index(backend)
    backend.close()


def _run(settings, index, embedder, source="docs", **options):
    with IngestPipeline.from_settings(settings, index=index.backend, embedder=embedder) as pipeline:
        return pipeline.run(source, **options)


def _status(report) -> dict[str, str]:
    return {o.doc_id.split(":", 1)[1]: o.status for o in report.outcomes}


def test_sync_follows_the_folder(folder_and_index, embedder):
    docs, settings, index = folder_and_index

    first = _run(settings, index, embedder)
    assert _status(first) == {"a.md": "indexed", "long.md": "indexed", "broken.pdf": "failed"}
    long_chunks = index.store.count(doc_id="docs:long.md")
    assert long_chunks > 3
    assert index.store.count() == first.chunks_embedded

    # nothing changed: nothing parsed, nothing embedded; the known failure is reported again, not retried
    second = _run(settings, index, embedder)
    assert _status(second) == {"a.md": "unchanged", "long.md": "unchanged", "broken.pdf": "failed"}
    assert second.chunks_embedded == 0
    [broken] = [o for o in second.outcomes if o.status == "failed"]
    assert broken.reason == first.problems()[0].reason and broken.detail.startswith("not retried")
    latest, earlier = index.ledger.runs("docs")
    assert latest.counts == {"unchanged": 2, "failed": 1} and earlier.counts == {"indexed": 2, "failed": 1}
    assert earlier.chunks_embedded == first.chunks_embedded and latest.started_at >= earlier.finished_at

    # touched but same bytes: the content hash says unchanged, nothing embedded
    stat = (docs / "a.md").stat()
    os.utime(docs / "a.md", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    third = _run(settings, index, embedder)
    assert _status(third)["a.md"] == "unchanged" and third.chunks_embedded == 0

    # the long document shrinks: re-chunked, its stale chunks deleted, ids deterministic
    (docs / "long.md").write_text("# Long\n\nNow it is short.\n", encoding="utf-8")
    fourth = _run(settings, index, embedder)
    assert _status(fourth)["long.md"] == "updated"
    assert index.store.chunk_ids("docs:long.md") == {point_id("docs:long.md", 0)}

    # a document disappears: its chunks and ledger entry go
    (docs / "a.md").unlink()
    fifth = _run(settings, index, embedder)
    assert _status(fifth)["a.md"] == "deleted"
    assert index.store.count(doc_id="docs:a.md") == 0
    assert "docs:a.md" not in index.ledger.entries("docs")
    assert index.store.count() == sum(e.chunks for e in index.ledger.entries("docs").values())


def _visible(index, embedder, groups, doc_id="docs:a.md") -> bool:
    """Whether a search as ``groups`` finds any chunk of ``doc_id`` (the answer path's own filter)."""
    hits = index.store.search(embedder.embed(["alpha team sensors"])[0], groups=groups, limit=20)
    return any(h.doc_id == doc_id for h in hits)


def test_a_permission_change_rewrites_the_acl_without_embedding(folder_and_index, embedder):
    docs, settings, index = folder_and_index
    _run(settings, index, embedder)
    assert _visible(index, embedder, ["g"]) and not _visible(index, embedder, ["h"])

    # the source's readers change, the files do not: a payload update, no fetch, no parse, no embedding
    moved = settings.model_copy(update={"sources": [settings.sources[0].model_copy(
        update={"groups": ["h"], "classification": "confidential"})]})
    second = _run(moved, index, embedder)
    assert _status(second) == {"a.md": "acl_updated", "long.md": "acl_updated", "broken.pdf": "failed"}
    assert second.chunks_embedded == 0
    assert not _visible(index, embedder, ["g"]) and _visible(index, embedder, ["h"])
    payloads = [p for _, p in index.store.points()]
    assert payloads and all(p["groups"] == ["h"] and p["classification"] == "confidential" for p in payloads)
    entry = index.ledger.entries("docs")["docs:a.md"]
    assert (entry.groups, entry.classification) == (["h"], "confidential")

    # a re-run finds nothing to do; a touched file with new readers gets them too (same bytes: no embedding)
    assert set(_status(_run(moved, index, embedder)).values()) == {"unchanged", "failed"}
    stat = (docs / "a.md").stat()
    os.utime(docs / "a.md", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    back = _run(settings, index, embedder)
    assert _status(back)["a.md"] == "unchanged" and _status(back)["long.md"] == "acl_updated"
    assert back.chunks_embedded == 0
    assert _visible(index, embedder, ["g"]) and not _visible(index, embedder, ["h"])


def test_a_ledger_without_acl_gets_it_from_the_next_sync(folder_and_index, embedder):
    """Entries written before the ledger kept the ACL: the next sync writes the ACL once, embeds nothing."""
    from dataclasses import replace

    _, settings, index = folder_and_index
    _run(settings, index, embedder)
    index.ledger.put([replace(e, groups=None, classification=None) for e in index.ledger.entries("docs").values()])
    again = _run(settings, index, embedder)
    assert _status(again)["a.md"] == "acl_updated" and again.chunks_embedded == 0
    assert _status(_run(settings, index, embedder))["a.md"] == "unchanged"


def test_chunks_get_bm25_vectors_and_their_documents_type_and_date(folder_and_index, embedder):
    docs, settings, index = folder_and_index
    _run(settings, index, embedder)
    from enclave.flows.components import build_sparse_embedder

    # found by BM25 alone: the sparse vectors were written with the chunks (a stemmed, rare term)
    hits = index.store.search(sparse=build_sparse_embedder(settings).embed_query("sensor shipping"), groups=["g"], limit=5)
    assert [h.doc_id for h in hits] == ["docs:a.md"]
    payloads = {payload["doc_id"]: payload for _, payload in index.store.points()}
    modified = (docs / "a.md").stat().st_mtime
    from datetime import datetime

    assert payloads["docs:a.md"]["doc_type"] == "md"
    assert datetime.fromisoformat(payloads["docs:a.md"]["modified_at"]).timestamp() == int(modified)


def test_a_failure_is_recorded_with_its_reason_and_the_run_goes_on(folder_and_index, embedder):
    _, settings, index = folder_and_index
    report = _run(settings, index, embedder)
    [broken] = [o for o in report.outcomes if o.doc_id.endswith("broken.pdf")]
    assert broken.status == "failed" and broken.reason and broken.detail
    assert index.ledger.entries("docs")["docs:broken.pdf"].status == "failed"
    assert report.counts()["indexed"] == 2


def test_a_document_that_fails_chunking_fails_alone(folder_and_index, embedder, monkeypatch):
    from enclave.indexes.chunker import MarkdownChunker

    docs, settings, index = folder_and_index
    real_run = MarkdownChunker.run

    def run(self, document):
        if "alpha team" in document.text:  # as nltk's sentence-end regex timing out on one long section did
            raise TimeoutError("regex match exceeded 5.0 s")
        return real_run(self, document)

    monkeypatch.setattr(MarkdownChunker, "run", run)
    report = _run(settings, index, embedder)
    [alpha] = [o for o in report.outcomes if o.doc_id.endswith("a.md")]
    assert (alpha.status, alpha.reason, alpha.chunks) == ("failed", "chunking failed", 0)
    assert alpha.detail == "TimeoutError: regex match exceeded 5.0 s"
    assert _status(report)["long.md"] == "indexed" and index.store.count(doc_id="docs:long.md") > 1
    assert index.store.count(doc_id="docs:a.md") == 0
    entry = index.ledger.entries("docs")["docs:a.md"]
    assert (entry.status, entry.reason) == ("failed", "chunking failed")

    monkeypatch.setattr(MarkdownChunker, "run", real_run)  # fixed: --retry-failed indexes it
    again = _run(settings, index, embedder, retry_failed=True)
    assert _status(again)["a.md"] == "updated" and index.store.count(doc_id="docs:a.md") == 1


def test_a_document_that_fails_embedding_fails_alone(folder_and_index, embedder, monkeypatch):
    _, settings, index = folder_and_index
    real_embed = embedder.embed

    def embed(texts):
        if any("alpha team" in text for text in texts):
            raise ValueError("input holds a token the model cannot take")
        return real_embed(texts)

    monkeypatch.setattr(embedder, "embed", embed)
    report = _run(settings, index, embedder)
    [alpha] = [o for o in report.outcomes if o.doc_id.endswith("a.md")]
    assert (alpha.status, alpha.reason) == ("failed", "embedding failed")
    assert "cannot take" in alpha.detail
    [long] = [o for o in report.outcomes if o.doc_id.endswith("long.md")]
    assert long.status == "indexed" and index.store.count(doc_id="docs:long.md") == long.chunks > 1
    assert index.store.count(doc_id="docs:a.md") == 0


def test_a_broken_embedder_fails_the_run_and_loses_nothing(folder_and_index, embedder, monkeypatch):
    docs, settings, index = folder_and_index
    _run(settings, index, embedder)
    before = (index.store.count(doc_id="docs:long.md"), index.ledger.entries("docs"))
    (docs / "long.md").write_text("# Long\n\nRewritten, and never embedded.\n", encoding="utf-8")

    def embed(texts):
        raise RuntimeError("the model is gone")

    monkeypatch.setattr(embedder, "embed", embed)
    with pytest.raises(RuntimeError, match="the model is gone"):
        _run(settings, index, embedder)
    # every document failing would have deleted their chunks: the run fails instead, and keeps them
    assert (index.store.count(doc_id="docs:long.md"), index.ledger.entries("docs")) == before


def test_retry_failed_parses_known_failures_again(folder_and_index, embedder):
    docs, settings, index = folder_and_index
    _run(settings, index, embedder)
    (docs / "broken.pdf").unlink()
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 still not a pdf")  # new bytes, but we force a retry anyway
    report = _run(settings, index, embedder, retry_failed=True)
    [broken] = [o for o in report.outcomes if o.doc_id.endswith("broken.pdf")]
    assert broken.status == "failed" and not broken.detail.startswith("not retried")


def test_a_new_document_is_pending_in_the_ledger_before_its_points_exist(folder_and_index, embedder, monkeypatch):
    # a crash between upsert and ledger update must not leave points the ledger does not know of
    docs, settings, index = folder_and_index
    seen = []
    real_upsert = ChunkStore.upsert

    def watching_upsert(self, chunks, vectors, sparse=None):
        seen.append({doc_id: e.status for doc_id, e in SyncLedger(self.backend).entries("docs").items()})
        return real_upsert(self, chunks, vectors, sparse)

    monkeypatch.setattr(ChunkStore, "upsert", watching_upsert)
    _run(settings, index, embedder)
    assert seen and seen[0]["docs:a.md"] == "pending" and seen[0]["docs:long.md"] == "pending"
    assert {e.status for e in index.ledger.entries("docs").values()} == {"indexed", "failed"}


def test_an_unknown_source_and_a_missing_folder_raise(folder_and_index, embedder, tmp_path):
    _, settings, index = folder_and_index
    with pytest.raises(KeyError, match="no source named 'nope'"):
        _run(settings, index, embedder, source="nope")
    with pytest.raises(FileNotFoundError):
        _run(settings, index, embedder, source=SourceSettings(name="gone", path=tmp_path / "missing"))
    assert index.ledger.entries("gone") == {}  # a failed listing deletes nothing and records nothing


def test_any_connector_can_be_ingested(folder_and_index, embedder):
    """A connector of one's own: only the Connector protocol, no base class."""
    from enclave.contracts import SourceDocument

    class Notes:
        source = "notes"
        texts = {"notes:one": "Calibration intervals are twelve months.", "notes:two": "Sensors ship on Tuesdays."}

        def list_documents(self):
            for doc_id, text in self.texts.items():
                yield SourceDocument(doc_id=doc_id, source="notes", uri=f"notes://{doc_id}", title=doc_id,
                                     version=str(len(text)), size=len(text), groups=("g",), classification="internal",
                                     extension=".txt")

        def fetch(self, document):
            return self.texts[document.doc_id].encode()

    _, settings, index = folder_and_index
    report = _run(settings, index, embedder, source=Notes())
    assert report.source == "notes" and report.counts() == {"indexed": 2}
    assert index.store.count(source="notes") == 2


def test_progress_events_count_documents_and_chunks(folder_and_index, embedder):
    _, settings, index = folder_and_index
    events: list[ProgressEvent] = []
    with IngestPipeline.from_settings(settings, index=index.backend, embedder=embedder, progress=events.append) as pipeline:
        report = pipeline.run("docs")
    totals = {kind: sum(e.amount for e in events if e.kind == kind) for kind in ProgressKind}
    assert totals == {ProgressKind.PLANNED: 3, ProgressKind.DOCUMENTS: 3, ProgressKind.CHUNKS: report.chunks_embedded}
    assert events[0].kind == ProgressKind.PLANNED and {e.source for e in events} == {"docs"}


def test_a_skip_for_want_of_a_reader_is_retried_once_the_parser_reads_the_type():
    from enclave.contracts import DocumentStatus, SourceDocument
    from enclave.flows.ingest_pipeline import SyncPlan
    from enclave.indexes.sync_ledger import LedgerEntry

    def doc(name):
        return SourceDocument(doc_id=f"s:{name}", source="s", uri=name, title=name, version="v1", size=1,
                              groups=("g",), classification="internal", extension="." + name.rsplit(".", 1)[1])

    def skipped(name, reason):
        return LedgerEntry(doc_id=f"s:{name}", source="s", version="v1", content_hash="h", chunks=0,
                           status=DocumentStatus.SKIPPED, reason=reason, groups=["g"], classification="internal")

    docs = [doc("scan.png"), doc("photo.heic"), doc("scan.pdf"), doc("song.wav"), doc("empty.txt")]
    known = {"s:scan.png": skipped("scan.png", "unsupported type"), "s:photo.heic": skipped("photo.heic", "no OCR engine"),
             "s:scan.pdf": skipped("scan.pdf", "no text"), "s:song.wav": skipped("song.wav", "unsupported type"),
             "s:empty.txt": skipped("empty.txt", "empty")}

    def reads(extension):
        return extension != ".wav"

    def todo(plan):
        return sorted(d.doc_id for d in plan.todo)

    assert todo(SyncPlan.of(docs, known)) == []  # nobody says the parser reads more now
    assert todo(SyncPlan.of(docs, known, readable=lambda extension: False)) == []
    assert todo(SyncPlan.of(docs, known, readable=reads)) == ["s:photo.heic", "s:scan.png"]
    # a PDF skipped as "no text" may be a scan from before OCR: --retry-failed reads it again
    assert todo(SyncPlan.of(docs, known, retry_failed=True, readable=reads)) == ["s:photo.heic", "s:scan.pdf", "s:scan.png"]
