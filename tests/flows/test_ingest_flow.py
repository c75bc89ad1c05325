"""Incremental sync of the ingest flow on a small folder that changes between runs."""

from __future__ import annotations

import os

import pytest

from enclave.settings import Settings, SourceSettings
from flows.ingest import ingest
from flows.components import Resources, index_path
from indexes.chunker import point_id
from indexes.edge_index import EdgeIndex
from indexes.server_index import ServerIndex
from qdrant_client import QdrantClient

# qdrant-client's local mode warns that payload indexes are no-ops there; the server honours them
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

LONG = "\n\n".join(f"Paragraph {i}: " + " ".join(f"word{i}x{j}" for j in range(120)) for i in range(12))


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
        index = ServerIndex(QdrantClient(":memory:"), "enclave", embedder.dimension)
    else:
        index = EdgeIndex(index_path(settings), embedder.dimension)
    yield docs, settings, index
    index.close()


def _run(settings, index, embedder):
    [report] = ingest(settings=settings, resources=Resources(embedder=embedder, index=index))
    return report


def _status(report) -> dict[str, str]:
    return {o.source_id.split(":", 1)[1]: o.status for o in report.outcomes}


def test_sync_follows_the_folder(folder_and_index, embedder):
    docs, settings, index = folder_and_index

    first = _run(settings, index, embedder)
    assert _status(first) == {"a.md": "indexed", "long.md": "indexed", "broken.pdf": "failed"}
    long_chunks = index.count(doc_id="docs:long.md")
    assert long_chunks > 3
    assert index.count() == first.chunks_embedded

    # nothing changed: nothing parsed, nothing embedded; the known failure is reported again, not retried
    second = _run(settings, index, embedder)
    assert _status(second) == {"a.md": "unchanged", "long.md": "unchanged", "broken.pdf": "failed"}
    assert second.chunks_embedded == 0
    [broken] = [o for o in second.outcomes if o.status == "failed"]
    assert broken.reason == first.problems()[0].reason and broken.detail.startswith("not retried")
    latest, earlier = index.runs("docs")
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
    assert index.chunk_ids("docs:long.md") == {point_id("docs:long.md", 0)}

    # a document disappears: its chunks and ledger entry go
    (docs / "a.md").unlink()
    fifth = _run(settings, index, embedder)
    assert _status(fifth)["a.md"] == "deleted"
    assert index.count(doc_id="docs:a.md") == 0
    assert "docs:a.md" not in index.ledger("docs")
    assert index.count() == sum(e.chunks for e in index.ledger("docs").values())


def test_chunks_get_bm25_vectors_and_their_documents_type_and_date(folder_and_index, embedder):
    docs, settings, index = folder_and_index
    _run(settings, index, embedder)
    from flows.components import build_sparse_embedder

    # found by BM25 alone: the sparse vectors were written with the chunks (a stemmed, rare term)
    hits = index.search(sparse=build_sparse_embedder(settings).embed_query("sensor shipping"), groups=["g"], limit=5)
    assert [h.doc_id for h in hits] == ["docs:a.md"]
    payloads = {payload["doc_id"]: payload for _, payload in index.points("chunks")}
    modified = (docs / "a.md").stat().st_mtime
    from datetime import datetime

    assert payloads["docs:a.md"]["doc_type"] == "md"
    assert datetime.fromisoformat(payloads["docs:a.md"]["modified_at"]).timestamp() == int(modified)


def test_a_failure_is_recorded_with_its_reason_and_the_run_goes_on(folder_and_index, embedder):
    _, settings, index = folder_and_index
    report = _run(settings, index, embedder)
    [broken] = [o for o in report.outcomes if o.source_id.endswith("broken.pdf")]
    assert broken.status == "failed" and broken.reason and broken.detail
    assert index.ledger("docs")["docs:broken.pdf"].status == "failed"
    assert report.counts()["indexed"] == 2


def test_retry_failed_parses_known_failures_again(folder_and_index, embedder):
    docs, settings, index = folder_and_index
    _run(settings, index, embedder)
    (docs / "broken.pdf").unlink()
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 still not a pdf")  # new bytes, but we force a retry anyway
    [report] = ingest(settings=settings, resources=Resources(embedder=embedder, index=index), retry_failed=True)
    [broken] = [o for o in report.outcomes if o.source_id.endswith("broken.pdf")]
    assert broken.status == "failed" and not broken.detail.startswith("not retried")


def test_a_new_document_is_pending_in_the_ledger_before_its_points_exist(folder_and_index, embedder, monkeypatch):
    # a crash between upsert and ledger update must not leave points the ledger does not know of
    docs, settings, index = folder_and_index
    seen = []
    real_upsert = type(index).upsert

    def watching_upsert(self, nodes, vectors, sparse=None):
        seen.append({sid: e.status for sid, e in self.ledger("docs").items()})
        return real_upsert(self, nodes, vectors, sparse)

    monkeypatch.setattr(type(index), "upsert", watching_upsert)
    _run(settings, index, embedder)
    assert seen and seen[0]["docs:a.md"] == "pending" and seen[0]["docs:long.md"] == "pending"
    assert {e.status for e in index.ledger("docs").values()} == {"indexed", "failed"}


def test_unknown_source_and_missing_folder_raise(folder_and_index, embedder, tmp_path):
    _, settings, index = folder_and_index
    with pytest.raises(KeyError, match="no source named 'nope'"):
        ingest(source="nope", settings=settings, resources=Resources(embedder=embedder, index=index))
    with pytest.raises(FileNotFoundError):
        ingest(path=str(tmp_path / "missing"), settings=settings, resources=Resources(embedder=embedder, index=index))


def test_path_ingest_names_the_source_after_the_folder(folder_and_index, embedder, tmp_path):
    _, settings, index = folder_and_index
    other = tmp_path / "Other Folder"
    other.mkdir()
    (other / "note.txt").write_text("A note about calibration intervals of twelve months.", encoding="utf-8")
    [report] = ingest(path=str(other), settings=settings, resources=Resources(embedder=embedder, index=index))
    assert report.source == "Other-Folder"
    assert _status(report) == {"note.txt": "indexed"}


def test_prefect_records_resources_as_a_placeholder(folder_and_index, embedder):
    # Prefect stores flow parameters with the run; an embedder walked field by field would be its tensors
    _, _, index = folder_and_index
    stored = ingest.serialize_parameters({"resources": Resources(embedder=embedder, index=index)})
    assert stored == {"resources": "<Resources>"}
