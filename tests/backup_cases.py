"""What the backup tests share: documents written as the ingest writes them (random vectors, no model), and an
embedded index owned by a real uvicorn serving /internal/index, as ``enclave serve`` owns it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from enclave.contracts import Chunk, DocumentStatus, point_id
from enclave.indexes import Bm25Embedder, ChunkStore, EdgeIndex, IndexBackend, IndexOwner, LedgerEntry, RunRecord, SyncLedger

BM25 = Bm25Embedder()


def chunks_of(doc_id: str, n: int, version: str = "v1") -> list[Chunk]:
    source, name = doc_id.split(":", 1)
    return [Chunk(id=point_id(doc_id, i), doc_id=doc_id, chunk=i, text=f"{name} part {i} about {version} leave policy",
                  section=f"{name} > {i}", source=source, title=name, uri=f"file:///{name}", doc_type="md",
                  modified_at="", groups=("everyone",), classification="internal", content_hash=f"{doc_id}-{version}")
            for i in range(n)]


def write_document(backend: IndexBackend, doc_id: str, n: int, rng: np.random.Generator, version: str = "v1",
                   new: bool = True) -> None:
    """One document as the ingest writes it: a pending entry if new, its chunks, its stale chunks deleted, its entry."""
    store, ledger = ChunkStore(backend), SyncLedger(backend)
    source = doc_id.split(":", 1)[0]
    if new:
        ledger.put([LedgerEntry(doc_id, source, "", "", 0, DocumentStatus.PENDING, uri=doc_id)])
    chunks = chunks_of(doc_id, n, version)
    vectors = rng.normal(size=(n, backend.dimension)).astype(np.float32)
    store.upsert(chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), BM25.embed([c.text for c in chunks]))
    if not new:
        store.delete_chunks_from(doc_id, n)
    ledger.put([LedgerEntry(doc_id, source, version, f"{doc_id}-{version}", n, DocumentStatus.INDEXED, uri=doc_id,
                            groups=["everyone"], classification="internal")])


def populate(backend: IndexBackend, rng: np.random.Generator, manifest: dict | None = None) -> None:
    """Three indexed documents (9 chunks), a failed one, a manifest, a connector state and a run record."""
    for doc_id, n in (("hb:a.md", 3), ("hb:b.md", 2), ("wiki:c.md", 4)):
        write_document(backend, doc_id, n, rng)
    ledger = SyncLedger(backend)
    ledger.put([LedgerEntry("hb:broken.pdf", "hb", "1-9", "", 0, DocumentStatus.FAILED, reason="corrupt")])
    ledger.save_manifest(manifest or {"embedder": {"backend": "sentence-transformers", "model": "m"},
                                      "dimension": backend.dimension})
    ledger.save_connector_state("wiki", {"cursor": "abc"})
    ledger.record_run(RunRecord("hb", "2026-11-01T10:00:00+00:00", "2026-11-01T10:00:05+00:00", 5.0, {"indexed": 2}, 5))


@contextmanager
def serving(edge: EdgeIndex) -> Iterator[IndexOwner]:
    """``edge`` owned by a real uvicorn on 127.0.0.1 serving /internal/index, with its owner record beside it:
    other processes' (and this one's) ``open_index`` then reach it through a RemoteIndex."""
    from fastapi import FastAPI
    from live_server import serving as serving_app

    from enclave.server.routers import index as index_router

    app = FastAPI()
    app.include_router(index_router.router)
    app.state.owned_index = edge
    with serving_app(app) as url:
        app.state.index_owner = owner = IndexOwner.claim(edge.path, url)
        try:
            yield owner
        finally:
            owner.release(edge.path)
