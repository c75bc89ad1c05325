"""The contract between Enclave's index logic and the place its points live.

An index is three stores of Qdrant points in one backend, so the sync ledger survives restarts and
scales with the index:

- ``chunks``: one point per chunk, with named vectors ``dense`` (cosine) and ``sparse`` (BM25 term
  weights with Qdrant's IDF modifier) and the chunk's payload (see
  [Chunk.payload][enclave.contracts.Chunk.payload]); payload indexes on ``doc_id, source, doc_type, groups,
  classification`` (keyword), ``chunk`` (integer) and ``modified_at`` (datetime), the fields filters use;
- ``ledger``: one vector-less point per source document (its version, content hash, chunk count, status);
- ``runs``: one vector-less point per ingest run of a source.

[ChunkStore][enclave.indexes.ChunkStore] and [SyncLedger][enclave.indexes.SyncLedger] hold all of the
logic; a backend only carries out these primitives, so every backend behaves the same by construction.
Three implement [IndexBackend][enclave.indexes.IndexBackend]: [EdgeIndex][enclave.indexes.EdgeIndex]
(Qdrant Edge in-process, the default), [ServerIndex][enclave.indexes.ServerIndex] (a Qdrant server,
through qdrant-client) and [RemoteIndex][enclave.indexes.RemoteIndex] (an Edge shard another process
owns, over HTTP). Filters and queries are qdrant-client's own models (``models.Filter``,
``models.QueryRequest``), which are also the remote wire format: Qdrant's REST shapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from qdrant_client import models

#: The names of the chunks' two vectors.
DENSE = "dense"
SPARSE = "sparse"
#: Payload fields of the chunks store that filters use, by index type.
KEYWORD_FIELDS = ("doc_id", "source", "doc_type", "groups", "classification")
INTEGER_FIELDS = ("chunk",)
DATETIME_FIELDS = ("modified_at",)


class Store(StrEnum):
    """The stores of an index: chunk points, the per-document sync ledger, the record of ingest runs."""

    CHUNKS = "chunks"
    LEDGER = "ledger"
    RUNS = "runs"


class IndexUnavailable(RuntimeError):
    """The index could not be opened or used (the message says why and what to do)."""


class IndexLocked(IndexUnavailable):
    """An embedded index is held by another process (an embedded shard belongs to one process).
    ``path`` is the index folder."""

    def __init__(self, path: Any, message: str) -> None:
        super().__init__(message)
        self.path = path


class IndexMissing(IndexUnavailable):
    """There is no index yet where one was to be read (run ``enclave ingest`` first)."""


class IndexMismatch(IndexUnavailable):
    """The stored index does not fit: its vectors have another dimension (another embedding model), or
    it was built by an older Enclave without sparse vectors. Re-index into a new collection."""


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector: term ids (uint32, unique) and their weights, as Qdrant stores it."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def to_wire(self) -> dict[str, list]:
        """Qdrant's JSON form ``{"indices": [...], "values": [...]}``."""
        return {"indices": list(self.indices), "values": list(self.values)}


@dataclass(frozen=True)
class Point:
    """One point to write: its id (a UUID string), payload, and for the chunks store its ``dense``
    vector (floats, the index's dimension) and ``sparse`` BM25 vector (None: found by dense search
    only). Ledger and run points carry no vector."""

    id: str
    payload: dict[str, Any]
    dense: list[float] | None = None
    sparse: SparseVector | None = None


class Hit(NamedTuple):
    """One result of a query: point id, score (higher is better within one query), payload."""

    id: str
    score: float
    payload: dict[str, Any]


class IndexBackend(Protocol):
    """The primitives a place for points carries out; ``store`` is a [Store][enclave.indexes.Store].

    Usage::

        backend = EdgeIndex(".enclave/index/enclave", dimension=384)
        backend.upsert(Store.CHUNKS, [Point(id, payload, dense=vector, sparse=terms)])
        backend.count(Store.CHUNKS, models.Filter(must=[models.FieldCondition(
            key="source", match=models.MatchValue(value="handbook"))]))
        backend.close()

    ``dimension`` is the size of the chunks' dense vectors. ``scroll`` yields (id, payload) of every
    point a filter (None: all) selects, in id order; ``query`` runs one Qdrant query on the chunks
    store (``models.QueryRequest``: a dense or sparse query, or both as prefetches fused by DBSF or RRF) and
    returns its hits best first. Writes are durable when the call returns. Errors are
    [IndexUnavailable][enclave.indexes.IndexUnavailable] (or a subclass); a malformed filter or query
    raises ValueError.
    """

    dimension: int

    def upsert(self, store: Store, points: Sequence[Point]) -> None:
        """Insert or replace ``points`` (by id)."""
        ...

    def delete(self, store: Store, selector: models.Filter) -> None:
        """Delete every point ``selector`` selects."""
        ...

    def delete_ids(self, store: Store, ids: Sequence[str]) -> None:
        """Delete the points with these ids (absent ones are ignored)."""
        ...

    def set_payload(self, store: Store, payload: dict[str, Any], selector: models.Filter) -> None:
        """Set the keys of ``payload`` on every point ``selector`` selects (other keys and the vectors
        stay as they are)."""
        ...

    def scroll(self, store: Store, selector: models.Filter | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, payload) of each selected point, in id order."""
        ...

    def count(self, store: Store, selector: models.Filter | None = None) -> int:
        """The exact number of selected points."""
        ...

    def query(self, request: models.QueryRequest) -> list[Hit]:
        """One query on the chunks store, best first."""
        ...

    def close(self) -> None:
        """Flush and release the index."""
        ...


def match(key: str, value: str | int) -> models.FieldCondition:
    """The condition ``payload[key] == value`` (for a list field: contains ``value``)."""
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def match_any(key: str, values: Sequence[str]) -> models.FieldCondition:
    """The condition ``payload[key]`` is (or, for a list field, holds) one of ``values``."""
    return models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))


def all_of(*conditions: models.Condition) -> models.Filter:
    """A filter every one of ``conditions`` must meet."""
    return models.Filter(must=list(conditions))


def now_iso() -> str:
    """The current time, ISO 8601 UTC, to the second (``ingested_at``, ledger ``updated_at``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")
