"""The chunk store and the sync ledger: the same behaviour on every backend, the Edge shard, a Qdrant server
(``QdrantClient(":memory:")`` stands in for the server API) and an Edge shard another process serves."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from prefect_server import free_port
from qdrant_client import QdrantClient

from enclave.contracts import Chunk, DocumentStatus, ScoredChunk, point_id
from enclave.indexes import (
    Bm25Embedder,
    ChunkStore,
    EdgeIndex,
    Fusion,
    IndexBackend,
    IndexLocked,
    IndexMismatch,
    IndexOwner,
    IndexUnavailable,
    LedgerEntry,
    Point,
    RemoteIndex,
    RunRecord,
    SearchFilter,
    ServerIndex,
    Store,
    SyncLedger,
)

DIM = 4

# qdrant-client's local mode warns that payload indexes are no-ops there; the server honours them
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@dataclass
class Index:
    """An index as the pipelines use it: the chunk store and the sync ledger over one backend."""

    backend: IndexBackend
    store: ChunkStore
    ledger: SyncLedger

    @classmethod
    def of(cls, backend: IndexBackend) -> Index:
        return cls(backend, ChunkStore(backend), SyncLedger(backend))

    def close(self) -> None:
        self.backend.close()


def _nodes(doc_id: str, n: int, *, source: str = "hb", groups=("everyone",), classification="internal") -> list[Chunk]:
    return [
        Chunk(id=point_id(doc_id, i), doc_id=doc_id, chunk=i, text=f"{doc_id} chunk {i}", section=f"Doc > Part {i}",
              source=source, title=doc_id.split(":", 1)[1], uri=f"file:///{doc_id}", doc_type="", modified_at="",
              groups=tuple(groups), classification=classification, content_hash=f"hash-{doc_id}")
        for i in range(n)
    ]


BM25 = Bm25Embedder()


def _text_nodes(doc_id: str, texts: list[str], *, groups=("everyone",), **fields) -> list[Chunk]:
    """One chunk per text, with ``fields`` (doc_type, modified_at...) on every chunk."""
    return [replace(chunk, text=text, **fields) for chunk, text in zip(_nodes(doc_id, len(texts), groups=groups), texts)]


def _put(index: Index, chunks: list[Chunk], vectors: np.ndarray) -> None:
    """Upsert with BM25 vectors of the chunks' texts, as the ingest flow does."""
    index.store.upsert(chunks, vectors, BM25.embed([c.text for c in chunks]))


def _ledger(doc_id: str, chunks: int = 3, **kw) -> LedgerEntry:
    source = doc_id.split(":", 1)[0]
    return LedgerEntry(doc_id=doc_id, source=source, version="1-10", content_hash=f"h-{doc_id}",
                       chunks=chunks, status=DocumentStatus.INDEXED, uri=f"file:///{doc_id}", **kw)


@contextmanager
def served(edge: EdgeIndex) -> Iterator[tuple[str, IndexOwner]]:
    """``edge`` served on /internal/index by a real uvicorn on 127.0.0.1, as ``enclave serve`` does."""
    import uvicorn
    from fastapi import FastAPI

    from enclave.server.routers import index as index_router

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = FastAPI()
    app.include_router(index_router.router)
    app.state.owned_index = edge
    app.state.index_owner = IndexOwner.claim(edge.path, url)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield url, app.state.index_owner
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(params=["edge", "server", "remote"])
def index(request, tmp_path: Path) -> Iterator[Index]:
    if request.param == "remote":  # an Edge shard owned by a server, used through its HTTP API
        edge = EdgeIndex(tmp_path / "index", dimension=DIM)
        with served(edge) as (url, owner):
            remote = Index.of(RemoteIndex(url, owner.token, DIM))
            try:
                yield remote
            finally:
                remote.close()
                edge.close()
        return
    if request.param == "edge":
        idx = Index.of(EdgeIndex(tmp_path / "index", dimension=DIM))
    else:
        idx = Index.of(ServerIndex(QdrantClient(":memory:"), "test", dimension=DIM))
    try:
        yield idx
    finally:
        idx.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_upsert_and_count(index: Index, rng) -> None:
    assert index.store.count() == 0
    index.store.upsert(_nodes("hb:a.md", 3), _unit(rng, 3))
    index.store.upsert(_nodes("hb:b.md", 2), _unit(rng, 2))
    index.store.upsert(_nodes("wiki:c.md", 4, source="wiki"), _unit(rng, 4))
    assert index.store.count() == 9
    assert index.store.count(doc_id="hb:a.md") == 3
    assert index.store.count(source="hb") == 5
    assert index.store.count(source="wiki") == 4
    assert index.store.count(doc_id="hb:a.md", source="wiki") == 0
    assert index.store.count(doc_id="nope") == 0


def test_upsert_rejects_mismatched_input(index: Index, rng) -> None:
    with pytest.raises(ValueError):
        index.store.upsert(_nodes("hb:a.md", 3), _unit(rng, 2))
    with pytest.raises(IndexMismatch, match="dimension"):
        index.store.upsert(_nodes("hb:a.md", 2), np.ones((2, DIM + 1), dtype=np.float32))
    index.store.upsert([], np.zeros((0, DIM), dtype=np.float32))
    assert index.store.count() == 0


def test_reupsert_same_ids_does_not_duplicate(index: Index, rng) -> None:
    index.store.upsert(_nodes("hb:a.md", 3), _unit(rng, 3))
    index.store.upsert(_nodes("hb:a.md", 3), _unit(rng, 3))
    assert index.store.count() == 3
    assert index.store.chunk_ids("hb:a.md") == {point_id("hb:a.md", i) for i in range(3)}


def test_search_returns_payload_best_first(index: Index, rng) -> None:
    vectors = _unit(rng, 5)
    index.store.upsert(_nodes("hb:a.md", 5, classification="confidential"), vectors)
    hits = index.store.search(vectors[2], groups=["everyone"], limit=3)
    assert len(hits) == 3
    assert all(isinstance(h, ScoredChunk) for h in hits)
    top = hits[0]
    assert top.id == point_id("hb:a.md", 2)
    assert top.score == pytest.approx(1.0, abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert (top.text, top.doc_id, top.source, top.title, top.uri, top.section, top.chunk) == (
        "hb:a.md chunk 2", "hb:a.md", "hb", "a.md", "file:///hb:a.md", "Doc > Part 2", 2,
    )
    assert top.classification == "confidential"
    assert top.groups == ("everyone",)


def test_search_filters_by_groups(index: Index, rng) -> None:
    hr_vectors = _unit(rng, 3)
    index.store.upsert(_nodes("hb:salaries.md", 3, groups=["hr"]), hr_vectors)
    index.store.upsert(_nodes("hb:build.md", 3, groups=["eng"]), _unit(rng, 3))
    index.store.upsert(_nodes("hb:lunch.md", 2, groups=["eng", "hr"]), _unit(rng, 2))
    # even a query that is exactly an hr chunk's vector returns no hr-only chunk to eng
    for vector in hr_vectors:
        hits = index.store.search(vector, groups=["eng"], limit=20)
        assert {h.doc_id for h in hits} == {"hb:build.md", "hb:lunch.md"}
        assert all("eng" in h.groups for h in hits)
    assert {h.doc_id for h in index.store.search(hr_vectors[0], groups=["hr"], limit=20)} == {"hb:salaries.md", "hb:lunch.md"}
    assert len(index.store.search(hr_vectors[0], groups=["sales", "hr"], limit=20)) == 5
    assert index.store.search(hr_vectors[0], groups=["sales"], limit=20) == []


def test_search_with_no_groups_returns_nothing(index: Index, rng) -> None:
    vectors = _unit(rng, 2)
    index.store.upsert(_nodes("hb:a.md", 2), vectors)
    assert index.store.search(vectors[0], groups=[], limit=5) == []


def test_search_filters_by_source(index: Index, rng) -> None:
    index.store.upsert(_nodes("hb:a.md", 3, source="hb"), _unit(rng, 3))
    index.store.upsert(_nodes("wiki:b.md", 3, source="wiki"), _unit(rng, 3))
    index.store.upsert(_nodes("mail:c.eml", 3, source="mail"), _unit(rng, 3))
    query = _unit(rng, 1)[0]
    assert {h.source for h in index.store.search(query, groups=["everyone"], limit=20, sources=["wiki"])} == {"wiki"}
    hits = index.store.search(query, groups=["everyone"], limit=20, sources=["wiki", "mail"])
    assert {h.source for h in hits} == {"wiki", "mail"}
    assert len(index.store.search(query, groups=["everyone"], limit=20, sources=None)) == 9
    assert len(index.store.search(query, groups=["everyone"], limit=4)) == 4


def test_delete_document(index: Index, rng) -> None:
    index.store.upsert(_nodes("hb:a.md", 3), _unit(rng, 3))
    index.store.upsert(_nodes("hb:b.md", 4), _unit(rng, 4))
    index.store.delete_document("hb:a.md")
    assert index.store.count(doc_id="hb:a.md") == 0
    assert index.store.chunk_ids("hb:a.md") == set()
    assert index.store.chunk_ids("hb:b.md") == {point_id("hb:b.md", i) for i in range(4)}
    assert index.store.count() == 4
    index.store.delete_document("hb:missing.md")  # no error
    assert index.store.count() == 4


def test_set_acl_rewrites_one_documents_groups_and_label_only(index: Index, rng) -> None:
    vectors = _unit(rng, 3)
    index.store.upsert(_nodes("hb:a.md", 3, groups=["hr"]), vectors)
    index.store.upsert(_nodes("hb:b.md", 2, groups=["hr"]), _unit(rng, 2))
    index.store.set_acl("hb:a.md", ["eng", "board"], "restricted")
    assert {h.doc_id for h in index.store.search(vectors[0], groups=["hr"], limit=20)} == {"hb:b.md"}
    moved = index.store.search(vectors[0], groups=["board"], limit=20)
    assert {h.doc_id for h in moved} == {"hb:a.md"} and len(moved) == 3
    assert all(h.groups == ("eng", "board") and h.classification == "restricted" and h.text for h in moved)
    assert moved[0].id == point_id("hb:a.md", 0) and moved[0].score > 0.99  # the vector stayed as it was


def test_delete_chunks_from(index: Index, rng) -> None:
    index.store.upsert(_nodes("hb:a.md", 5), _unit(rng, 5))
    index.store.upsert(_nodes("hb:b.md", 5), _unit(rng, 5))
    index.store.delete_chunks_from("hb:a.md", 2)
    assert index.store.chunk_ids("hb:a.md") == {point_id("hb:a.md", 0), point_id("hb:a.md", 1)}
    assert index.store.count(doc_id="hb:b.md") == 5
    index.store.delete_chunks_from("hb:b.md", 5)  # nothing at or past 5
    assert index.store.count(doc_id="hb:b.md") == 5
    index.store.delete_chunks_from("hb:b.md", 0)
    assert index.store.count(doc_id="hb:b.md") == 0


def test_chunk_ids(index: Index, rng) -> None:
    assert index.store.chunk_ids("hb:a.md") == set()
    index.store.upsert(_nodes("hb:a.md", 3) + _nodes("hb:b.md", 1), _unit(rng, 4))
    ids = index.store.chunk_ids("hb:a.md")
    assert ids == {point_id("hb:a.md", i) for i in range(3)}
    assert all(isinstance(i, str) for i in ids)


def test_ledger_round_trip(index: Index) -> None:
    assert index.ledger.entries() == {}
    entries = [
        _ledger("hb:a.md"),
        _ledger("hb:b.pdf", chunks=0, reason="encrypted", detail="needs a password"),
        _ledger("wiki:c.md", chunks=7),
    ]
    entries[1].status = "failed"
    index.ledger.put(entries)
    everything = index.ledger.entries()
    assert everything == {e.doc_id: e for e in entries}
    assert everything["hb:b.pdf"].reason == "encrypted"
    assert everything["hb:b.pdf"].status == "failed"
    assert set(index.ledger.entries("hb")) == {"hb:a.md", "hb:b.pdf"}
    assert set(index.ledger.entries("wiki")) == {"wiki:c.md"}
    assert index.ledger.entries("other") == {}
    # put replaces by source id
    index.ledger.put([_ledger("hb:a.md", chunks=9)])
    assert index.ledger.entries("hb")["hb:a.md"].chunks == 9
    assert len(index.ledger.entries()) == 3
    index.ledger.forget(["hb:a.md", "wiki:c.md", "never:was.md"])
    assert set(index.ledger.entries()) == {"hb:b.pdf"}
    index.ledger.put([])
    index.ledger.forget([])
    assert set(index.ledger.entries()) == {"hb:b.pdf"}
    # the ledger holds no chunks
    assert index.store.count() == 0


def test_runs_are_recorded_newest_first(index: Index) -> None:
    assert index.ledger.runs() == []
    older = RunRecord("hb", "2026-11-01T10:00:00+00:00", "2026-11-01T10:05:00+00:00", 300.0, {"indexed": 3}, 40)
    newer = RunRecord("hb", "2026-11-02T10:00:00+00:00", "2026-11-02T10:00:01+00:00", 1.0, {"unchanged": 3}, 0)
    other = RunRecord("wiki", "2026-11-03T10:00:00+00:00", "2026-11-03T10:00:02+00:00", 2.0, {"failed": 1}, 0)
    index.ledger.record_run(older)
    index.ledger.record_run(newer)
    index.ledger.record_run(other)
    assert index.ledger.runs("hb") == [newer, older]
    assert index.ledger.runs() == [other, newer, older]
    assert index.store.count() == 0 and index.ledger.entries() == {}  # runs are neither chunks nor ledger entries


def test_points_lists_every_point_of_a_store(index: Index, rng) -> None:
    index.store.upsert(_nodes("hb:a.md", 3), _unit(rng, 3))
    index.ledger.put([_ledger("hb:a.md")])
    chunks = dict(index.store.points())
    assert set(chunks) == {point_id("hb:a.md", i) for i in range(3)}
    assert {p["chunk"] for p in chunks.values()} == {0, 1, 2}
    [(_, entry)] = list(index.backend.scroll(Store.LEDGER))
    assert entry["doc_id"] == "hb:a.md"


# -- Remote only ----------------------------------------------------------------------------------------

def test_remote_needs_the_owners_token_and_a_live_owner(tmp_path: Path) -> None:
    edge = EdgeIndex(tmp_path / "index", dimension=DIM)
    try:
        with served(edge) as (url, owner):
            assert IndexOwner.find(edge.path) == owner
            with pytest.raises(IndexUnavailable, match="403"):
                RemoteIndex(url, "not-the-token")
            with pytest.raises(IndexMismatch, match="size 4, the embedder makes 8"):
                RemoteIndex(url, owner.token, dimension=8)
            owner.release(edge.path)
            assert IndexOwner.find(edge.path) is None
        with pytest.raises(IndexUnavailable, match="unreachable"):
            RemoteIndex(url, owner.token)
    finally:
        edge.close()


# -- Edge only ----------------------------------------------------------------------------------------

def test_edge_reopen_keeps_points_and_ledger(tmp_path: Path, rng) -> None:
    vectors = _unit(rng, 3)
    index = Index.of(EdgeIndex(tmp_path / "idx", dimension=DIM))
    index.store.upsert(_nodes("hb:a.md", 3, groups=["hr"]), vectors)
    index.ledger.put([_ledger("hb:a.md")])
    index.close()

    reopened = Index.of(EdgeIndex(tmp_path / "idx", dimension=DIM))
    try:
        assert reopened.store.count() == 3
        assert reopened.store.chunk_ids("hb:a.md") == {point_id("hb:a.md", i) for i in range(3)}
        assert reopened.ledger.entries()["hb:a.md"].content_hash == "h-hb:a.md"
        hits = reopened.store.search(vectors[1], groups=["hr"], limit=1)
        assert hits[0].id == point_id("hb:a.md", 1)
        assert reopened.store.search(vectors[1], groups=["eng"], limit=1) == []
    finally:
        reopened.close()


def test_sparse_search_ranks_by_bm25_with_the_collections_idf(index: Index, rng) -> None:
    _put(index, _text_nodes("hb:a.md", ["Invoices are paid within thirty days."]), _unit(rng, 1))
    _put(index, _text_nodes("hb:b.md", ["Invoices go to the finance mailbox."]), _unit(rng, 1))
    _put(index, _text_nodes("hb:c.md", ["Invoices over NOK 50000 need the CFO's approval."]), _unit(rng, 1))
    # "invoices" is in every chunk (IDF near 0); "approval" only in c, so c leads; "day" (stemmed) finds a alone
    hits = index.store.search(sparse=BM25.embed_query("invoice approval"), groups=["everyone"], limit=10)
    assert [h.doc_id for h in hits][0] == "hb:c.md"
    assert len(hits) == 3 and all(h.score >= 0 for h in hits)
    assert hits[0].score > 2 * hits[1].score  # the rare term carries the score
    assert [h.doc_id for h in index.store.search(sparse=BM25.embed_query("day"), groups=["everyone"], limit=10)] == ["hb:a.md"]
    # a query of only stopwords matches nothing rather than everything
    assert index.store.search(sparse=BM25.embed_query("the of and"), groups=["everyone"], limit=10) == []
    # IDF follows the collection: once "approval" is common, it no longer outweighs the other term
    for n in range(4):
        _put(index, _text_nodes(f"hb:approval-{n}.md", ["Approval of leave."]), _unit(rng, 1))
    hits = index.store.search(sparse=BM25.embed_query("finance approval"), groups=["everyone"], limit=10)
    assert hits[0].doc_id == "hb:b.md"


def test_hybrid_fuses_both_sides_in_one_query(index: Index, rng) -> None:
    query_vector = _unit(rng, 1)[0]
    near = query_vector + 0.05 * _unit(rng, 1)[0]
    far = -query_vector
    # dense-only: right vector, no shared words; sparse-only: the words, opposite vector; both: a bit of each
    _put(index, _text_nodes("hb:dense.md", ["Quarterly figures overview."]), np.stack([query_vector]))
    _put(index, _text_nodes("hb:sparse.md", ["Warranty claims for the HX-400 sensor."]), np.stack([far]))
    _put(index, _text_nodes("hb:both.md", ["HX-400 warranty summary."]), np.stack([near / np.linalg.norm(near)]))
    _put(index, _text_nodes("hb:noise.md", ["Canteen menu for the week."]), _unit(rng, 1))
    sparse = BM25.embed_query("HX-400 warranty claims")
    dense_ids = [h.doc_id for h in index.store.search(query_vector, groups=["everyone"], limit=2)]
    sparse_ids = [h.doc_id for h in index.store.search(sparse=sparse, groups=["everyone"], limit=2)]
    assert "hb:sparse.md" not in dense_ids and "hb:dense.md" not in sparse_ids
    # three candidates a side: dense [dense, both, noise], sparse [sparse, both]; RRF with k=60 scores
    # 1/(rank + 59) per side: both 2/61 beats dense and sparse 1/60 each, which beat noise 1/62
    shallow = Fusion(method="rrf", prefetch=3)
    hybrid = index.store.search(query_vector, sparse=sparse, groups=["everyone"], limit=3, fusion=shallow)
    assert [h.doc_id for h in hybrid][0] == "hb:both.md"
    assert {h.doc_id for h in hybrid} == {"hb:both.md", "hb:dense.md", "hb:sparse.md"}
    assert hybrid[0].score == pytest.approx(2 / 61, rel=1e-4)
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)
    # weights tip the balance between the one-sided hits: 1/(1/4 + 59) > 1/(1 + 59)
    to_sparse = index.store.search(query_vector, sparse=sparse, groups=["everyone"], limit=3,
                                   fusion=Fusion(method="rrf", weights=(1.0, 4.0), prefetch=3))
    to_dense = index.store.search(query_vector, sparse=sparse, groups=["everyone"], limit=3,
                                  fusion=Fusion(method="rrf", weights=(4.0, 1.0), prefetch=3))
    rank = {h.doc_id: i for i, h in enumerate(to_sparse)}
    assert rank["hb:sparse.md"] < rank.get("hb:dense.md", 99)
    rank = {h.doc_id: i for i, h in enumerate(to_dense)}
    assert rank["hb:dense.md"] < rank.get("hb:sparse.md", 99)  # weighted to dense, even noise overtakes it


def test_dbsf_sums_each_sides_scores_normalised_by_mean_and_3_sd(index: Index, rng) -> None:
    """Distribution-based score fusion as Qdrant defines it, checked against the two sides' own scores."""
    query_vector = _unit(rng, 1)[0]
    texts = ["HX-400 warranty summary.", "Warranty claims for the HX-400 sensor.", "Quarterly figures overview.",
             "Canteen menu for the week.", "HX-400 datasheet and warranty terms.", "Travel policy for staff."]
    for n, text in enumerate(texts):
        _put(index, _text_nodes(f"hb:{n}.md", [text]), _unit(rng, 1))
    sparse = BM25.embed_query("HX-400 warranty claims")
    dense_side = index.store.search(query_vector, groups=["everyone"], limit=6)
    sparse_side = index.store.search(sparse=sparse, groups=["everyone"], limit=6)

    def normalised(hits):
        scores = np.array([h.score for h in hits])
        spread = 3 * scores.std(ddof=1)  # the sample standard deviation, as Qdrant takes it
        low, high = scores.mean() - spread, scores.mean() + spread
        return {h.doc_id: (h.score - low) / (high - low) for h in hits}

    dense_n, sparse_n = normalised(dense_side), normalised(sparse_side)
    expected = {d: dense_n.get(d, 0.0) + sparse_n.get(d, 0.0) for d in {*dense_n, *sparse_n}}
    fused = index.store.search(query_vector, sparse=sparse, groups=["everyone"], limit=6,
                               fusion=Fusion(method="dbsf", prefetch=6))
    assert [h.doc_id for h in fused] == sorted(expected, key=lambda d: -expected[d])[:6]
    for hit in fused:
        assert hit.score == pytest.approx(expected[hit.doc_id], rel=1e-3, abs=1e-4)


def test_every_mode_filters_by_groups_inside_the_query(index: Index, rng) -> None:
    secret_vector = _unit(rng, 1)
    secret = "Board minutes: the merger with Nordvik closes in March."
    _put(index, _text_nodes("hb:board.md", [secret], groups=["board"]), secret_vector)
    _put(index, _text_nodes("hb:public.md", ["Merger rumours are not commented on."]), _unit(rng, 1))
    sparse = BM25.embed_query(secret)
    for vector, terms in [(secret_vector[0], None), (None, sparse), (secret_vector[0], sparse)]:
        hits = index.store.search(vector, sparse=terms, groups=["everyone"], limit=50, fusion=Fusion(prefetch=1))
        assert [h.doc_id for h in hits] == ["hb:public.md"]
        assert [h.doc_id for h in index.store.search(vector, sparse=terms, groups=["board"], limit=50)] == ["hb:board.md"]
        assert index.store.search(vector, sparse=terms, groups=[], limit=50) == []


def test_search_narrows_by_document_type_and_modification_date(index: Index, rng) -> None:
    _put(index, _text_nodes("hb:old.pdf", ["Leave policy 2019."], doc_type="pdf", modified_at="2019-05-01T10:00:00+00:00"),
         _unit(rng, 1))
    _put(index, _text_nodes("hb:new.pdf", ["Leave policy 2026."], doc_type="pdf", modified_at="2026-03-01T10:00:00+00:00"),
         _unit(rng, 1))
    _put(index, _text_nodes("hb:new.md", ["Leave policy notes."], doc_type="md", modified_at="2026-04-01T10:00:00+00:00"),
         _unit(rng, 1))
    _put(index, _text_nodes("hb:undated.md", ["Leave policy draft."], doc_type="md"), _unit(rng, 1))
    query, sparse = _unit(rng, 1)[0], BM25.embed_query("leave policy")

    def found(where: SearchFilter) -> set[str]:
        dense = {h.doc_id for h in index.store.search(query, groups=["everyone"], limit=10, where=where)}
        hybrid = {h.doc_id for h in index.store.search(query, sparse=sparse, groups=["everyone"], limit=10, where=where)}
        assert dense == hybrid
        return dense

    assert found(SearchFilter(doc_types=("pdf",))) == {"hb:old.pdf", "hb:new.pdf"}
    assert found(SearchFilter(doc_types=(".MD",))) == {"hb:new.md", "hb:undated.md"}
    assert found(SearchFilter(modified_from="2026-01-01T00:00:00Z")) == {"hb:new.pdf", "hb:new.md"}
    assert found(SearchFilter(modified_to="2026-03-01T10:00:00Z")) == {"hb:old.pdf", "hb:new.pdf"}  # inclusive
    assert found(SearchFilter(doc_types=("pdf",), modified_from="2026-01-01T00:00:00Z")) == {"hb:new.pdf"}
    assert found(SearchFilter(sources=("wiki",))) == set()
    assert len(found(SearchFilter())) == 4


def test_search_needs_a_vector(index: Index) -> None:
    with pytest.raises(ValueError, match="dense vector, a sparse vector"):
        index.store.search(groups=["everyone"])


def test_edge_index_without_sparse_vectors_asks_for_a_reindex(tmp_path: Path) -> None:
    import qdrant_edge as qe

    old = tmp_path / "idx" / "chunks"
    old.mkdir(parents=True)
    config = qe.EdgeConfig(vectors={"dense": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)})
    qe.EdgeShard.create(str(old), config).close()
    with pytest.raises(IndexMismatch, match="without sparse .* ingest again"):
        EdgeIndex(tmp_path / "idx", dimension=DIM)


def test_edge_reopen_with_other_dimension_fails(tmp_path: Path, rng) -> None:
    index = Index.of(EdgeIndex(tmp_path / "idx", dimension=DIM))
    index.store.upsert(_nodes("hb:a.md", 2), _unit(rng, 2))
    index.close()
    with pytest.raises(IndexMismatch, match="another embedding model"):
        EdgeIndex(tmp_path / "idx", dimension=DIM * 2)
    again = Index.of(EdgeIndex(tmp_path / "idx", dimension=DIM))  # the failed open left nothing locked
    try:
        assert again.store.count() == 2
    finally:
        again.close()


def test_edge_open_twice_fails(tmp_path: Path) -> None:
    index = EdgeIndex(tmp_path / "idx", dimension=DIM)
    try:
        with pytest.raises(IndexLocked, match="another process"):
            EdgeIndex(tmp_path / "idx", dimension=DIM)
    finally:
        index.close()


# -- server only --------------------------------------------------------------------------------------

def test_server_existing_collection_with_other_dimension_fails(rng) -> None:
    client = QdrantClient(":memory:")
    first = Index.of(ServerIndex(client, "test", dimension=DIM))
    first.store.upsert(_nodes("hb:a.md", 2), _unit(rng, 2))
    with pytest.raises(IndexMismatch, match="size 4"):
        ServerIndex(client, "test", dimension=DIM * 2)
    same = Index.of(ServerIndex(client, "test", dimension=DIM))  # the same dimension reuses the collection
    assert same.store.count() == 2
    other = Index.of(ServerIndex(client, "other", dimension=DIM * 2))  # another collection is independent
    assert other.store.count() == 0
    client.close()


def test_server_collection_without_sparse_vectors_asks_for_a_reindex() -> None:
    from qdrant_client import models

    client = QdrantClient(":memory:")
    client.create_collection("old", vectors_config={"dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)})
    with pytest.raises(IndexMismatch, match="no 'sparse'.*ingest again"):
        ServerIndex(client, "old", dimension=DIM)
    client.close()


# -- the ledger's summary, and entries an older Enclave wrote ----------------------------------------------

def test_summary_per_source_for_status(index: Index, rng) -> None:
    index.store.upsert(_nodes("hb:a.md", 3), _unit(rng, 3))
    failed = [_ledger("hb:b.pdf", chunks=0, reason="encrypted"), _ledger("hb:c.pdf", chunks=0, reason="encrypted"),
              _ledger("hb:d.doc", chunks=0, reason="corrupt or unreadable")]
    for entry in failed:
        entry.status = DocumentStatus.FAILED
    index.ledger.put([_ledger("hb:a.md"), *failed, _ledger("wiki:w.md", chunks=0)])
    run = RunRecord("hb", "2026-11-02T10:00:00+00:00", "2026-11-02T10:00:05+00:00", 5.0, {"indexed": 1, "failed": 3}, 3)
    index.ledger.record_run(run)

    hb, never, wiki = index.ledger.summary(["hb", "handbook"])  # configured ones first, then the ledger's others
    assert (hb.source, hb.documents, hb.chunks, hb.last_run) == ("hb", 4, 3, run)
    assert hb.by_status == {DocumentStatus.INDEXED: 1, DocumentStatus.FAILED: 3}
    assert hb.failures_by_reason() == {"encrypted": 2, "corrupt or unreadable": 1}
    assert [e.doc_id for e in hb.failed] == ["hb:d.doc", "hb:b.pdf", "hb:c.pdf"]  # by reason, then id
    assert (never.source, never.documents, never.chunks, never.last_run) == ("handbook", 0, 0, None)
    assert (wiki.source, wiki.documents) == ("wiki", 1)
    assert [s.source for s in index.ledger.summary(["hb", "handbook"], only="wiki")] == ["wiki"]


def test_ledger_entries_written_before_doc_id_was_the_name_still_read(index: Index) -> None:
    old = {"source_id": "hb:old.md", "source": "hb", "version": "1-2", "content_hash": "h", "chunks": 2,
           "status": "indexed", "uri": "file:///old.md", "reason": "", "detail": "", "updated_at": "2026-01-01T00:00:00+00:00"}
    index.backend.upsert(Store.LEDGER, [Point(LedgerEntry("hb:old.md", "hb", "", "", 0, DocumentStatus.PENDING).point_id, old)])
    [entry] = index.ledger.entries("hb").values()
    assert (entry.doc_id, entry.status, entry.chunks) == ("hb:old.md", DocumentStatus.INDEXED, 2)


# -- the backend contract ------------------------------------------------------------------------------------

def test_backend_filters_are_qdrant_client_models(index: Index, rng) -> None:
    from qdrant_client import models

    index.store.upsert(_nodes("hb:a.md", 3) + _nodes("wiki:b.md", 2, source="wiki"), _unit(rng, 5))
    not_hb = models.Filter(must_not=[models.FieldCondition(key="source", match=models.MatchValue(value="hb"))])
    either = models.Filter(should=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="hb:a.md")),
                                   models.FieldCondition(key="chunk", range=models.Range(gte=1))])
    assert index.backend.count(Store.CHUNKS, not_hb) == 2
    assert index.backend.count(Store.CHUNKS, either) == 4  # hb:a.md's three, and wiki:b.md's chunk 1
    assert index.backend.count(Store.CHUNKS, None) == 5


def test_the_embedded_index_refuses_a_filter_it_cannot_run() -> None:
    from qdrant_client import models

    from enclave.indexes.edge_index import edge_filter

    geo = models.Filter(must=[models.FieldCondition(key="where", geo_radius=models.GeoRadius(
        center=models.GeoPoint(lon=10.7, lat=59.9), radius=1000.0))])
    with pytest.raises(ValueError, match="only match value/any and ranges"):
        edge_filter(geo)


def test_the_remote_wire_format_is_qdrants_json(tmp_path: Path, rng) -> None:
    """What a RemoteIndex sends is Qdrant's own REST shape: a plain HTTP client can speak it too."""
    import httpx

    from enclave.indexes.remote_index import TOKEN_HEADER

    edge = EdgeIndex(tmp_path / "index", dimension=DIM)
    try:
        Index.of(edge).store.upsert(_nodes("hb:a.md", 3) + _nodes("wiki:b.md", 2, source="wiki"), _unit(rng, 5))
        with served(edge) as (url, owner):
            headers = {TOKEN_HEADER: owner.token}
            body = {"store": "chunks", "filter": {"must": [{"key": "source", "match": {"value": "wiki"}}]}}
            answer = httpx.post(f"{url}/internal/index/count", json=body, headers=headers)
            assert answer.status_code == 200 and answer.json() == {"result": 2}
            malformed = httpx.post(f"{url}/internal/index/count", json={"store": "nowhere"}, headers=headers)
            assert malformed.status_code == 422
            everything = httpx.post(f"{url}/internal/index/delete", json={"store": "chunks"}, headers=headers)
            assert everything.status_code == 400 and "a filter is required" in everything.text
            geo = {"store": "chunks", "filter": {"must": [{"key": "where", "geo_radius": {
                "center": {"lon": 10.7, "lat": 59.9}, "radius": 1000.0}}]}}
            unsupported = httpx.post(f"{url}/internal/index/count", json=geo, headers=headers)
            assert unsupported.status_code == 400 and "only match value/any and ranges" in unsupported.text
            assert httpx.post(f"{url}/internal/index/count", json=body).status_code == 403
    finally:
        edge.close()


def test_an_index_held_by_another_process_is_locked_or_reached_through_its_owner(tmp_path: Path) -> None:
    import subprocess
    import sys

    from enclave.flows import index_path, open_index
    from enclave.settings import Settings

    settings = Settings(data_dir=tmp_path / "data")
    folder = index_path(settings)
    EdgeIndex(folder, dimension=DIM).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from enclave.indexes import EdgeIndex\nimport sys, time\n"
                               f"index = EdgeIndex({str(folder)!r})\nprint('open', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(IndexLocked) as locked:
            open_index(settings)  # no owner record: the holder serves nothing
        assert locked.value.path == folder and "another process" in str(locked.value)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    open_index(settings).close()  # the lock went with the process
