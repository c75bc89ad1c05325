"""The embedded index: Qdrant Edge shards (Qdrant's own engine, in-process) in a local folder."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from qdrant_client import models

from enclave.indexes.index_backend import (
    DATETIME_FIELDS,
    DENSE,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    SPARSE,
    Hit,
    IndexLocked,
    IndexMismatch,
    IndexMissing,
    IndexUnavailable,
    Point,
    SparseVector,
    Store,
)

_SCROLL_PAGE = 1000
LOCK_FILE = ".lock"


class EdgeIndex:
    """An [IndexBackend][enclave.indexes.IndexBackend] in three Qdrant Edge shards under ``path``
    (``chunks/``, ``ledger/``, ``runs/``).

    Usage::

        backend = EdgeIndex(".enclave/index/enclave", dimension=384)
        store = ChunkStore(backend)
        store.upsert(chunks, vectors, sparse)
        backend.close()

    The chunks shard has a ``dense`` vector (cosine) and a ``sparse`` one with Qdrant's IDF modifier.
    An embedded index belongs to one process: this class holds an exclusive lock on ``<path>/.lock``
    while it is open, and opening one that another process (or another EdgeIndex in this process)
    holds raises [IndexLocked][enclave.indexes.IndexLocked] (``enclave.flows.open_index`` then writes
    through the owner, see [RemoteIndex][enclave.indexes.RemoteIndex]). Within the process, threads
    share it: each shard call holds a lock, and writes also pass a gate that
    [writes_paused][enclave.indexes.edge_index.EdgeIndex.writes_paused] closes (a backup's consistent read).
    ``dimension=None`` opens an existing index at its own
    dimension (raises [IndexMissing][enclave.indexes.IndexMissing] when there is none); an existing
    index with another dimension, or one built before sparse vectors, raises
    [IndexMismatch][enclave.indexes.IndexMismatch].
    """

    def __init__(self, path: str | Path, dimension: int | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._writes = threading.RLock()  # writers pass it before the shard lock; writes_paused holds it alone
        stored = self.stored_dimension(self.path)
        if dimension is None:  # an existing index knows its own dimension (e.g. for `enclave status`)
            if stored is None:
                raise IndexMissing(f"there is no index at {self.path} yet: run `enclave ingest` first")
            dimension = stored
        if stored is not None and stored != dimension:
            raise IndexMismatch(
                f"the index at {self.path} holds vectors of size {stored}, the embedder makes {dimension}: it was "
                "built with another embedding model; choose another index.collection or delete the folder to re-index"
            )
        self.dimension = dimension
        self._lock_file = self._acquire(self.path)
        try:
            self._shards = {
                Store.CHUNKS: self._open(self.path / "chunks", self._chunks_config(dimension), indexed=True),
                # ledger and run points carry no vector; Edge wants one declared, so they get a 1-d one never used
                Store.LEDGER: self._open(self.path / "ledger", _bare_config(), indexed=False),
                Store.RUNS: self._open(self.path / "runs", _bare_config(), indexed=False),
            }
        except BaseException:
            self._release()
            raise

    @staticmethod
    def stored_dimension(path: str | Path) -> int | None:
        """The dense vector size of the index at ``path``, or None if there is none."""
        config = Path(path) / "chunks" / "edge_config.json"
        if not config.exists():
            return None
        return int(json.loads(config.read_text(encoding="utf-8"))["vectors"][DENSE]["size"])

    @staticmethod
    def _acquire(path: Path) -> Any:
        path.mkdir(parents=True, exist_ok=True)
        handle = open(path / LOCK_FILE, "a+b")  # noqa: SIM115 - held open for the index's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise IndexLocked(path, f"the index at {path} is open in another process (an embedded index belongs to "
                                    "one process: stop `enclave serve`, or use a Qdrant server)") from None
        os.set_inheritable(handle.fileno(), False)
        return handle

    def _release(self) -> None:
        handle, self._lock_file = self._lock_file, None
        if handle is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    @staticmethod
    def _chunks_config(dimension: int) -> qe.EdgeConfig:
        return qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )

    def _open(self, path: Path, config: qe.EdgeConfig, indexed: bool) -> qe.EdgeShard:
        exists = (path / "edge_config.json").exists()
        if exists and indexed:
            stored = json.loads((path / "edge_config.json").read_text(encoding="utf-8"))
            if SPARSE not in (stored.get("sparse_vectors") or {}):
                raise IndexMismatch(
                    f"the index at {path} was built without sparse (BM25) vectors by an older Enclave: "
                    "delete the folder, or choose another index.collection, and ingest again"
                )
        try:
            if exists:
                shard = qe.EdgeShard.load(str(path), config)  # checks that config matches the segments
            else:
                path.mkdir(parents=True, exist_ok=True)
                shard = qe.EdgeShard.create(str(path), config)
        except Exception as exc:  # the engine reports every failure as one exception type
            raise IndexUnavailable(f"could not open the index at {path}: {exc}") from exc
        fields = [(name, qe.PayloadSchemaType.Keyword) for name in KEYWORD_FIELDS]
        fields += [(name, qe.PayloadSchemaType.Integer) for name in INTEGER_FIELDS]
        fields += [(name, qe.PayloadSchemaType.Datetime) for name in DATETIME_FIELDS]
        for name, schema in fields if indexed else [("source", qe.PayloadSchemaType.Keyword)]:
            shard.update(qe.UpdateOperation.create_field_index(name, schema))
        return shard

    # -- primitives -----------------------------------------------------------------------------------------------------
    def upsert(self, store: Store, points: Sequence[Point]) -> None:
        edge_points = [qe.Point(id=p.id, vector=_vectors(p), payload=p.payload) for p in points]
        with self._writes, self._lock:
            self._shards[store].update(qe.UpdateOperation.upsert_points(edge_points))

    def delete(self, store: Store, selector: models.Filter) -> None:
        with self._writes, self._lock:
            self._shards[store].update(qe.UpdateOperation.delete_points_by_filter(edge_filter(selector)))

    def delete_ids(self, store: Store, ids: Sequence[str]) -> None:
        with self._writes, self._lock:
            self._shards[store].update(qe.UpdateOperation.delete_points(list(ids)))

    def set_payload(self, store: Store, payload: dict[str, Any], selector: models.Filter) -> None:
        with self._writes, self._lock:
            self._shards[store].update(qe.UpdateOperation.set_payload_by_filter(edge_filter(selector), payload))

    def scroll(self, store: Store, selector: models.Filter | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        shard, offset, condition = self._shards[store], None, edge_filter(selector)
        while True:
            with self._lock:
                records, offset = shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=_SCROLL_PAGE, filter=condition, with_payload=True,
                                     with_vector=False))
            for record in records:
                yield str(record.id), record.payload or {}
            if offset is None:
                return

    def count(self, store: Store, selector: models.Filter | None = None) -> int:
        with self._lock:
            return self._shards[store].count(qe.CountRequest(exact=True, filter=edge_filter(selector)))

    def query(self, request: models.QueryRequest) -> list[Hit]:
        prefetches = [qe.Prefetch(limit=int(p.limit or 10), query=_edge_query(p.query, p.using), filter=edge_filter(p.filter))
                      for p in _as_list(request.prefetch or [])]
        if isinstance(request.query, models.RrfQuery):  # Qdrant's RRF k defaults to 2
            query = qe.Fusion.Rrf(k=int(request.query.rrf.k or 2), weights=request.query.rrf.weights)
        elif isinstance(request.query, models.FusionQuery) and request.query.fusion == models.Fusion.DBSF:
            query = qe.Fusion.Dbsf()
        else:
            query = _edge_query(request.query, request.using)
        edge_request = qe.QueryRequest(limit=int(request.limit or 10), query=query, filter=edge_filter(request.filter),
                                       with_payload=True, **({"prefetches": prefetches} if prefetches else {}))
        with self._lock:
            points = self._shards[Store.CHUNKS].query(edge_request)
        return [Hit(str(p.id), float(p.score), p.payload or {}) for p in points]

    # -- a consistent read of every store, for backups ---------------------------------------------------------------
    @contextmanager
    def writes_paused(self) -> Iterator[None]:
        """Within the block no other thread's write reaches the index: writers wait at the gate (the block's
        own thread may still write), while searches, counts and scrolls go on. Everything read inside one
        block is one point in time of all three stores.

        Usage::

            with backend.writes_paused():
                chunks = list(backend.export_points(Store.CHUNKS))
                ledger = list(backend.export_points(Store.LEDGER))
        """
        with self._writes:
            yield

    def export_points(self, store: Store) -> Iterator[Point]:
        """Every point of ``store`` with its payload and vectors (a chunk's ``dense`` and ``sparse``; ledger
        and run points have none), in id order, a page of 1,000 at a time."""
        shard, offset = self._shards[store], None
        while True:
            with self._lock:
                records, offset = shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=_SCROLL_PAGE, with_payload=True, with_vector=True))
            for record in records:
                vectors = record.vector or {}
                sparse = vectors.get(SPARSE)
                dense = vectors.get(DENSE) if store == Store.CHUNKS else None
                yield Point(str(record.id), record.payload or {}, dense,
                            None if sparse is None else SparseVector(tuple(sparse.indices), tuple(sparse.values)))
            if offset is None:
                return

    def close(self) -> None:
        with self._writes, self._lock:
            try:
                for shard in self._shards.values():
                    try:
                        shard.flush()
                    finally:
                        shard.close()
            finally:
                self._release()


def _bare_config() -> qe.EdgeConfig:
    return qe.EdgeConfig(vectors={DENSE: qe.EdgeVectorParams(size=1, distance=qe.Distance.Dot)})


def _vectors(point: Point) -> dict[str, Any]:
    vectors: dict[str, Any] = {}
    if point.dense is not None:
        vectors[DENSE] = point.dense
    if point.sparse is not None and point.sparse.indices:  # a chunk of only stopwords or symbols has no terms
        vectors[SPARSE] = qe.SparseVector(list(point.sparse.indices), list(point.sparse.values))
    return vectors


def _edge_query(query: Any, using: str | None) -> Any:
    """A dense (list of floats) or sparse (``models.SparseVector``) nearest-neighbour query."""
    if isinstance(query, models.SparseVector):
        return qe.Query.Nearest(qe.SparseVector(list(query.indices), list(query.values)), using=using or SPARSE)
    if isinstance(query, models.NearestQuery):
        return _edge_query(query.nearest, using)
    if isinstance(query, list) and all(isinstance(x, (int, float)) for x in query):
        return qe.Query.Nearest([float(x) for x in query], using=using or DENSE)
    raise ValueError(f"the embedded index runs dense, sparse and fused (DBSF, RRF) queries, not {type(query).__name__}")


def edge_filter(selector: models.Filter | None) -> qe.Filter | None:
    """Qdrant Edge's filter for qdrant-client's ``models.Filter``: ``must``, ``should`` and ``must_not``
    of field conditions that match a value or any of several, or a numeric or datetime range (what
    Enclave's stores use), and nested filters of those. Raises ValueError for any other condition."""
    if selector is None:
        return None
    parts = {name: [_edge_condition(c) for c in _as_list(getattr(selector, name))]
             for name in ("must", "should", "must_not") if getattr(selector, name)}
    return qe.Filter(**parts)


def _as_list(conditions: Any) -> list:
    return conditions if isinstance(conditions, list) else [conditions]


def _edge_condition(condition: Any) -> Any:
    if isinstance(condition, models.Filter):
        return edge_filter(condition)
    if not isinstance(condition, models.FieldCondition):
        raise ValueError(f"unsupported filter condition {type(condition).__name__}")
    if isinstance(condition.match, models.MatchValue):
        return qe.FieldCondition(key=condition.key, match=qe.MatchValue(condition.match.value))
    if isinstance(condition.match, models.MatchAny):
        return qe.FieldCondition(key=condition.key, match=qe.MatchAny(any=list(condition.match.any)))
    if isinstance(condition.range, models.DatetimeRange):
        bounds = {k: _iso(v) for k in ("gte", "gt", "lte", "lt") if (v := getattr(condition.range, k)) is not None}
        return qe.FieldCondition(key=condition.key, range=qe.RangeDateTime(**bounds))
    if isinstance(condition.range, models.Range):
        bounds = {k: float(v) for k in ("gte", "gt", "lte", "lt") if (v := getattr(condition.range, k)) is not None}
        return qe.FieldCondition(key=condition.key, range=qe.RangeFloat(**bounds))
    raise ValueError(f"unsupported condition on {condition.key!r}: only match value/any and ranges")


def _iso(moment: datetime | str) -> str:
    return moment.isoformat() if isinstance(moment, datetime) else str(moment)
