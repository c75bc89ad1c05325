"""The embedded index: a Qdrant Edge shard (Qdrant's own engine, in-process) on a local folder."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from indexes.vector_index import (
    DATETIME_FIELDS,
    DENSE,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    SPARSE,
    VectorIndex,
    VectorIndexError,
)

_SCROLL_PAGE = 1000


class EdgeIndex(VectorIndex):
    """Chunks, ledger and runs in three Qdrant Edge shards under ``path`` (``chunks/``, ``ledger/``, ``runs/``).

    Usage::

        index = EdgeIndex(".enclave/index/enclave", dimension=384)
        index.upsert(nodes, vectors)
        hits = index.search(query_vector, groups=["everyone"], limit=5)
        index.close()

    The chunks shard has a ``dense`` vector (cosine) and a ``sparse`` one with Qdrant's IDF modifier.
    A shard belongs to one process: opening one that another process holds raises
    VectorIndexError (``flows.components.build_index`` then writes through the owner, see
    indexes/remote_index.py). Within the process, threads share it: each shard call holds a lock. Opening an existing shard with another ``dimension`` raises VectorIndexError
    (a different embedding model needs a new collection); so does one built before sparse vectors
    (it needs a re-index).
    """

    def __init__(self, path: str | Path, dimension: int | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        if dimension is None:  # an existing index knows its own dimension (e.g. for `enclave status`)
            dimension = self.stored_dimension(self.path)
            if dimension is None:
                raise VectorIndexError(f"there is no index at {self.path} yet: run `enclave ingest` first")
        self.dimension = dimension
        self._chunks = self._open(self.path / "chunks", self._chunks_config(dimension), indexed=True)
        # ledger and run points carry no vector; Edge wants one declared, so they get a 1-d one never used
        bare = qe.EdgeConfig(vectors={DENSE: qe.EdgeVectorParams(size=1, distance=qe.Distance.Dot)})
        self._ledger = self._open(self.path / "ledger", bare, indexed=False)
        self._runs = self._open(self.path / "runs", bare, indexed=False)
        self._shards = {"chunks": self._chunks, "ledger": self._ledger, "runs": self._runs}

    @staticmethod
    def stored_dimension(path: str | Path) -> int | None:
        """The dense vector size of the index at ``path``, or None if there is none."""
        config = Path(path) / "chunks" / "edge_config.json"
        if not config.exists():
            return None
        return int(json.loads(config.read_text(encoding="utf-8"))["vectors"][DENSE]["size"])

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
                raise VectorIndexError(
                    f"the index at {path} was built without sparse (BM25) vectors by an older Enclave: "
                    "delete the folder, or choose another index.collection, and ingest again"
                )
        try:
            if exists:
                return qe.EdgeShard.load(str(path), config)  # checks that config matches the segments
            path.mkdir(parents=True, exist_ok=True)
            shard = qe.EdgeShard.create(str(path), config)
        except Exception as exc:
            message = str(exc)
            if "WouldBlock" in message:
                raise VectorIndexError(
                    f"the index at {path} is open in another process (an embedded shard belongs to one process: "
                    "stop `enclave serve`, or use a Qdrant server)"
                ) from exc
            if "incompatible" in message.lower():
                raise VectorIndexError(
                    f"the index at {path} was built with another embedding model ({message}); "
                    "choose another index.collection or delete the folder to re-index"
                ) from exc
            raise VectorIndexError(f"could not open the index at {path}: {message}") from exc
        fields = [(name, qe.PayloadSchemaType.Keyword) for name in KEYWORD_FIELDS]
        fields += [(name, qe.PayloadSchemaType.Integer) for name in INTEGER_FIELDS]
        fields += [(name, qe.PayloadSchemaType.Datetime) for name in DATETIME_FIELDS]
        for name, schema in fields if indexed else [("source", qe.PayloadSchemaType.Keyword)]:
            shard.update(qe.UpdateOperation.create_field_index(name, schema))
        return shard

    # -- primitives -----------------------------------------------------------------------------
    def _shard(self, store: str) -> qe.EdgeShard:
        return self._shards[store]

    def _upsert(self, store: str, ids: list[str], vectors: list[dict], payloads: list[dict]) -> None:
        vectors = [{name: qe.SparseVector(v["indices"], v["values"]) if name == SPARSE else v for name, v in named.items()}
                   for named in vectors]
        points = [qe.Point(id=i, vector=v, payload=p) for i, v, p in zip(ids, vectors, payloads)]
        with self._lock:
            self._shard(store).update(qe.UpdateOperation.upsert_points(points))

    def _delete(self, store: str, filter_: Any) -> None:
        with self._lock:
            self._shard(store).update(qe.UpdateOperation.delete_points_by_filter(filter_))

    def _delete_ids(self, store: str, ids: list[str]) -> None:
        with self._lock:
            self._shard(store).update(qe.UpdateOperation.delete_points(ids))

    def _scroll(self, store: str, filter_: Any) -> Iterable[tuple[Any, dict]]:
        shard, offset = self._shard(store), None
        while True:
            with self._lock:
                records, offset = shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=_SCROLL_PAGE, filter=filter_, with_payload=True, with_vector=False)
                )
            for record in records:
                yield record.id, record.payload or {}
            if offset is None:
                return

    def _count(self, filter_: Any) -> int:
        with self._lock:
            return self._chunks.count(qe.CountRequest(exact=True, filter=filter_))

    def _query(self, query: dict[str, Any], filter_: Any, limit: int) -> list[tuple[Any, float, dict]]:
        dense = qe.Query.Nearest(query["dense"], using=DENSE) if query.get("dense") is not None else None
        sparse = None
        if query.get("sparse") is not None:
            sparse = qe.Query.Nearest(qe.SparseVector(query["sparse"]["indices"], query["sparse"]["values"]), using=SPARSE)
        fusion = query.get("fusion")
        if dense is not None and sparse is not None:
            depth = int(fusion["prefetch"])
            request = qe.QueryRequest(
                limit=limit,
                prefetches=[qe.Prefetch(limit=depth, query=dense, filter=filter_),
                            qe.Prefetch(limit=depth, query=sparse, filter=filter_)],
                query=qe.Fusion.Rrf(k=int(fusion["k"]), weights=[float(w) for w in fusion["weights"]]),
                filter=filter_,
                with_payload=True,
            )
        else:
            request = qe.QueryRequest(limit=limit, query=dense or sparse, filter=filter_, with_payload=True)
        with self._lock:
            points = self._chunks.query(request)
        return [(p.id, p.score, p.payload or {}) for p in points]

    def _match(self, key: str, value: str | int) -> Any:
        return qe.FieldCondition(key=key, match=qe.MatchValue(value))

    def _match_any(self, key: str, values: list[str]) -> Any:
        return qe.FieldCondition(key=key, match=qe.MatchAny(any=values))

    def _at_least(self, key: str, value: int) -> Any:
        return qe.FieldCondition(key=key, range=qe.RangeFloat(gte=float(value)))

    def _between(self, key: str, start: str | None, end: str | None) -> Any:
        return qe.FieldCondition(key=key, range=qe.RangeDateTime(gte=start, lte=end))

    def _filter(self, must: list[Any]) -> Any:
        return qe.Filter(must=must)

    def close(self) -> None:
        with self._lock:
            self._close_shards()

    def _close_shards(self) -> None:
        for shard in self._shards.values():
            try:
                shard.flush()
            finally:
                shard.close()
