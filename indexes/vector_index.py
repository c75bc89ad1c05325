"""The index interface shared by the embedded Qdrant Edge shard and a Qdrant server.

Three stores per index, all in the same backend, so the ledger survives restarts and scales with
the index: ``chunks`` (named vectors ``dense``, cosine, and ``sparse``, BM25 term weights with
Qdrant's IDF modifier; payload below), the ``ledger`` (one vector-less point per source document:
version, content hash, chunk count, status) and ``runs`` (one point per ingest run of a source:
when, how long, documents by outcome).

Chunk payload: ``text, doc_id, source, title, section, uri, doc_type, modified_at, groups,
classification, content_hash, chunk, ingested_at``. Payload indexes: ``doc_id, source, doc_type,
groups, classification`` (keyword), ``chunk`` (integer) and ``modified_at`` (datetime), the fields
filters use.

Search runs in one Qdrant query (see :meth:`VectorIndex.search`): dense nearest neighbours, sparse
BM25, or both as prefetches fused with Reciprocal Rank Fusion (Cormack, Clarke & Büttcher 2009),
always filtered by the caller's groups inside the query.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from llama_index.core.schema import TextNode

DENSE = "dense"
SPARSE = "sparse"
KEYWORD_FIELDS = ("doc_id", "source", "doc_type", "groups", "classification")
INTEGER_FIELDS = ("chunk",)
DATETIME_FIELDS = ("modified_at",)
#: Retrieval modes: dense nearest neighbours, sparse BM25, or both fused with RRF.
MODES = ("hybrid", "dense", "sparse")
LEDGER_NAMESPACE = uuid.UUID("0c6f0d55-3f0e-5a43-b9a2-8d1bd4b1e6a2")
#: The stores of an index: chunk points, the per-document ledger, and the record of ingest runs.
STORES = ("chunks", "ledger", "runs")


class VectorIndexError(RuntimeError):
    """The index could not be opened or used (locked by another process, wrong dimension, unreachable)."""


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector: term ids (uint32, unique) and their weights, as Qdrant stores it."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def to_wire(self) -> dict[str, list]:
        """The JSON form backends and :class:`indexes.remote_index.RemoteIndex` pass on."""
        return {"indices": list(self.indices), "values": list(self.values)}


@dataclass(frozen=True)
class SearchFilter:
    """Metadata a caller may narrow a search by, on top of the ACL filter (which always applies).

    ``sources``: source names; ``doc_types``: file types without the dot (``pdf``, ``md``);
    ``modified_from`` / ``modified_to``: ISO 8601 datetimes, inclusive, on the document's modification
    time (a document without one is excluded when either bound is given). Empty fields do not filter.
    """

    sources: tuple[str, ...] = ()
    doc_types: tuple[str, ...] = ()
    modified_from: str | None = None
    modified_to: str | None = None


@dataclass(frozen=True)
class Fusion:
    """How hybrid search fuses its two prefetches: weighted Reciprocal Rank Fusion as Qdrant computes
    it, score = sum over prefetches of 1 / (rank / weight + k - 1) with rank from 1. ``prefetch`` is
    how many candidates each side contributes (at least the search's ``limit``); ``weights`` are
    (dense, sparse)."""

    k: int = 60
    weights: tuple[float, float] = (1.0, 1.0)
    prefetch: int = 100


@dataclass(frozen=True)
class ScoredChunk:
    """One retrieved chunk. ``score`` depends on the mode: cosine similarity in [-1, 1] (dense), a
    BM25 score >= 0 (sparse) or an RRF score in (0, 2/k] (hybrid); within one search, higher is better."""

    id: str
    score: float
    text: str
    doc_id: str
    source: str
    title: str
    uri: str
    section: str
    chunk: int
    classification: str
    groups: tuple[str, ...]


@dataclass
class LedgerEntry:
    """What the index knows of one source document.

    ``status`` is ``indexed``, ``skipped``, ``failed`` or ``pending`` (written before a new document's
    first points, so a crash before its ledger entry still leaves a record of them: a pending entry
    has no version, so the next run redoes the document, or deletes it if the source no longer has it);
    ``reason`` a short category for skipped and
    failed ones (``encrypted``, ``empty``...), ``detail`` the underlying message; ``chunks`` the number
    of points the document has in the index; ``updated_at`` ISO 8601 UTC.
    """

    source_id: str
    source: str
    version: str
    content_hash: str
    chunks: int
    status: str
    uri: str = ""
    reason: str = ""
    detail: str = ""
    updated_at: str = field(default_factory=lambda: now_iso())

    @property
    def point_id(self) -> str:
        return str(uuid.uuid5(LEDGER_NAMESPACE, self.source_id))


@dataclass
class RunRecord:
    """One ingest run of one source. ``counts``: documents by outcome (indexed, updated, deleted,
    unchanged, skipped, failed); ``started_at``/``finished_at`` ISO 8601 UTC; ``seconds`` wall time."""

    source: str
    started_at: str
    finished_at: str
    seconds: float
    counts: dict[str, int]
    chunks_embedded: int = 0

    @property
    def point_id(self) -> str:
        return str(uuid.uuid5(LEDGER_NAMESPACE, f"run:{self.source}:{self.started_at}"))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def chunk_payload(node: TextNode, ingested_at: str) -> dict[str, Any]:
    """The point payload of a chunk node made by :class:`indexes.chunker.MarkdownChunker`."""
    meta = node.metadata
    return {
        "text": node.get_content(),
        "doc_id": node.ref_doc_id,
        "source": meta.get("source", ""),
        "title": meta.get("title", ""),
        "section": meta.get("section", ""),
        "uri": meta.get("uri", ""),
        "doc_type": meta.get("doc_type", ""),
        "modified_at": meta.get("modified_at") or None,
        "groups": list(meta.get("groups", [])),
        "classification": meta.get("classification", "internal"),
        "content_hash": meta.get("content_hash", ""),
        "chunk": int(meta.get("chunk", 0)),
        "ingested_at": ingested_at,
    }


def scored_chunk(point_id: Any, score: float, payload: dict[str, Any]) -> ScoredChunk:
    return ScoredChunk(
        id=str(point_id),
        score=float(score),
        text=payload.get("text", ""),
        doc_id=payload.get("doc_id", ""),
        source=payload.get("source", ""),
        title=payload.get("title", ""),
        uri=payload.get("uri", ""),
        section=payload.get("section", ""),
        chunk=int(payload.get("chunk", 0)),
        classification=payload.get("classification", ""),
        groups=tuple(payload.get("groups", [])),
    )


class VectorIndex(ABC):
    """Chunks and ledger in Qdrant. Subclasses supply the backend's primitives; this class holds the
    logic both share, so the two backends behave the same by construction.

    Usage (any backend)::

        index.upsert(nodes, vectors)                 # nodes: list[TextNode]; vectors: (n, dim) float32
        index.delete_chunks_from("hr:leave.md", 7)   # drop chunks 7.. of a document that shrank
        hits = index.search(query_vector, groups=["staff"], limit=5)
        index.put_ledger([LedgerEntry(...)]); index.ledger("hr")  # {source_id: LedgerEntry}
    """

    dimension: int

    # -- backend primitives (``store`` is one of STORES) -------------------------------------------------------------------
    @abstractmethod
    def _upsert(self, store: str, ids: list[str], vectors: list[dict], payloads: list[dict]) -> None: ...

    @abstractmethod
    def _delete(self, store: str, filter_: Any) -> None: ...

    @abstractmethod
    def _delete_ids(self, store: str, ids: list[str]) -> None: ...

    @abstractmethod
    def _scroll(self, store: str, filter_: Any) -> Iterable[tuple[Any, dict]]: ...

    @abstractmethod
    def _count(self, filter_: Any) -> int: ...

    @abstractmethod
    def _query(self, query: dict[str, Any], filter_: Any, limit: int) -> list[tuple[Any, float, dict]]:
        """One Qdrant query on the chunks. ``query``: ``{"dense": [floats] | None, "sparse": {"indices",
        "values"} | None, "fusion": {"k", "weights", "prefetch"} | None}``; both vectors given means
        hybrid (two prefetches, each filtered, fused with RRF); returns (id, score, payload), best first."""

    @abstractmethod
    def _match(self, key: str, value: str | int) -> Any: ...

    @abstractmethod
    def _match_any(self, key: str, values: list[str]) -> Any: ...

    @abstractmethod
    def _at_least(self, key: str, value: int) -> Any: ...

    @abstractmethod
    def _between(self, key: str, start: str | None, end: str | None) -> Any:
        """Datetime range condition on ``key``, ISO 8601 bounds, inclusive; None is open."""

    @abstractmethod
    def _filter(self, must: list[Any]) -> Any: ...

    @abstractmethod
    def close(self) -> None:
        """Flush and release the index."""

    # -- shared logic ---------------------------------------------------------------------------
    def upsert(self, nodes: Sequence[TextNode], vectors: np.ndarray, sparse: Sequence[SparseVector] | None = None) -> None:
        """Write chunk points (ids = node ids) with their dense vectors, shape (len(nodes), dimension),
        and their sparse BM25 vectors (one per node; see :class:`indexes.sparse_embedder.Bm25Embedder`).
        Points written without a sparse vector are found by dense search only. Raises ValueError when
        the counts differ, VectorIndexError for the wrong dimension."""
        if len(nodes) != len(vectors) or (sparse is not None and len(sparse) != len(nodes)):
            raise ValueError(f"{len(nodes)} nodes but {len(vectors)} dense and {len(sparse or [])} sparse vectors")
        if len(nodes) == 0:
            return
        if vectors.shape[1] != self.dimension:
            raise VectorIndexError(f"vectors have dimension {vectors.shape[1]}, the index {self.dimension}")
        ingested_at = now_iso()
        named = [{DENSE: row.tolist()} for row in vectors]
        for point, terms in zip(named, sparse or []):
            if terms.indices:  # a chunk of only stopwords or symbols has no terms
                point[SPARSE] = terms.to_wire()
        self._upsert("chunks", [node.node_id for node in nodes], named, [chunk_payload(node, ingested_at) for node in nodes])

    def delete_document(self, doc_id: str) -> None:
        """Delete every chunk of ``doc_id`` (by the indexed ``doc_id`` field: cost proportional to its chunks)."""
        self._delete("chunks", self._filter([self._match("doc_id", doc_id)]))

    def delete_chunks_from(self, doc_id: str, first: int) -> None:
        """Delete chunks number ``first`` and above of ``doc_id`` (stale after the document shrank)."""
        self._delete("chunks", self._filter([self._match("doc_id", doc_id), self._at_least("chunk", first)]))

    def search(
        self,
        vector: np.ndarray | None = None,
        *,
        sparse: SparseVector | None = None,
        groups: Sequence[str],
        limit: int = 5,
        sources: Sequence[str] | None = None,
        where: SearchFilter | None = None,
        fusion: Fusion | None = None,
    ) -> list[ScoredChunk]:
        """The best ``limit`` chunks among those whose ACL shares a group with ``groups``, best first.

        Given ``vector`` only (dense, shape (dimension,)): nearest by cosine. Given ``sparse`` only
        (a query from :meth:`indexes.sparse_embedder.Bm25Embedder.embed_query`): BM25, with IDF from
        the collection. Given both: hybrid, one query whose dense and sparse prefetches are each
        filtered and fused by ``fusion`` (default :class:`Fusion`). ``sources`` and ``where`` narrow
        the search further. No groups means no results (fail closed); neither vector raises ValueError.
        """
        if vector is None and sparse is None:
            raise ValueError("search needs a dense vector, a sparse vector, or both")
        if not groups:
            return []
        where = where or SearchFilter()
        must = [self._match_any("groups", list(groups))]
        sources = tuple(sources or ()) + where.sources
        if sources:
            must.append(self._match_any("source", list(sources)))
        if where.doc_types:
            must.append(self._match_any("doc_type", [t.lower().lstrip(".") for t in where.doc_types]))
        if where.modified_from or where.modified_to:
            must.append(self._between("modified_at", where.modified_from, where.modified_to))
        if sparse is not None and not sparse.indices and vector is None:
            return []  # a query of only stopwords matches nothing by BM25
        query: dict[str, Any] = {
            "dense": None if vector is None else np.asarray(vector, dtype=np.float32).tolist(),
            "sparse": None if sparse is None or not sparse.indices else sparse.to_wire(),
            "fusion": None,
        }
        if query["dense"] is not None and query["sparse"] is not None:
            fusion = fusion or Fusion()
            query["fusion"] = {"k": fusion.k, "weights": list(fusion.weights), "prefetch": max(fusion.prefetch, limit)}
        hits = self._query(query, self._filter(must), limit)
        return [scored_chunk(pid, score, payload) for pid, score, payload in hits]

    def count(self, doc_id: str | None = None, source: str | None = None) -> int:
        """Number of chunk points, optionally of one document or one source."""
        must = []
        if doc_id is not None:
            must.append(self._match("doc_id", doc_id))
        if source is not None:
            must.append(self._match("source", source))
        return self._count(self._filter(must) if must else None)

    def chunk_ids(self, doc_id: str) -> set[str]:
        """Point ids of the chunks of ``doc_id``."""
        return {str(pid) for pid, _ in self._scroll("chunks", self._filter([self._match("doc_id", doc_id)]))}

    def points(self, store: str = "chunks") -> Iterable[tuple[str, dict[str, Any]]]:
        """Every point of ``store`` (one of STORES) as (point id, payload), in id order."""
        for pid, payload in self._scroll(store, None):
            yield str(pid), payload

    def ledger(self, source: str | None = None) -> dict[str, LedgerEntry]:
        """The ledger entries of ``source`` (all sources if None), by source id."""
        filter_ = self._filter([self._match("source", source)]) if source is not None else None
        entries = {}
        for _, payload in self._scroll("ledger", filter_):
            entry = LedgerEntry(**{k: payload[k] for k in LedgerEntry.__dataclass_fields__ if k in payload})
            entries[entry.source_id] = entry
        return entries

    def put_ledger(self, entries: Sequence[LedgerEntry]) -> None:
        """Insert or replace ledger entries (keyed by source id)."""
        if entries:
            self._upsert("ledger", [e.point_id for e in entries], [{} for _ in entries], [asdict(e) for e in entries])

    def delete_ledger(self, source_ids: Sequence[str]) -> None:
        """Forget the ledger entries of ``source_ids``."""
        if source_ids:
            self._delete_ids("ledger", [str(uuid.uuid5(LEDGER_NAMESPACE, sid)) for sid in source_ids])

    def record_run(self, run: RunRecord) -> None:
        """Keep the record of one ingest run."""
        self._upsert("runs", [run.point_id], [{}], [asdict(run)])

    def runs(self, source: str | None = None) -> list[RunRecord]:
        """Recorded ingest runs of ``source`` (all sources if None), newest first."""
        filter_ = self._filter([self._match("source", source)]) if source is not None else None
        runs = [RunRecord(**{k: p[k] for k in RunRecord.__dataclass_fields__ if k in p}) for _, p in self._scroll("runs", filter_)]
        return sorted(runs, key=lambda r: r.started_at, reverse=True)

    # -- serving this index to another process (see indexes/remote_index.py) ----------------------
    def filter_from_wire(self, wire: dict | None) -> Any:
        """This backend's filter for the JSON form :class:`indexes.remote_index.RemoteIndex` sends:
        ``{"must": [{"match": [key, value]} | {"any": [key, [values]]} | {"gte": [key, number]}
        | {"between": [key, [start, end]]}]}``.
        Raises ValueError for anything else."""
        if wire is None:
            return None
        must = []
        for condition in wire.get("must", []):
            [(kind, (key, value))] = condition.items()
            if kind == "match":
                must.append(self._match(key, value))
            elif kind == "any":
                must.append(self._match_any(key, list(value)))
            elif kind == "gte":
                must.append(self._at_least(key, int(value)))
            elif kind == "between":
                must.append(self._between(key, *value))
            else:
                raise ValueError(f"unknown filter condition {kind!r}")
        return self._filter(must)

    def execute(self, operation: str, body: dict[str, Any]) -> Any:
        """Run one backend primitive sent over the wire by a RemoteIndex: ``upsert``, ``delete``,
        ``delete_ids``, ``count``, ``query`` (JSON-able results) or ``scroll`` (an iterator of
        ``[id, payload]``). ``store`` is one of STORES. Raises ValueError for an unknown operation or store."""
        store = body.get("store", "chunks")
        if store not in STORES:
            raise ValueError(f"unknown store {store!r}")
        filter_ = self.filter_from_wire(body.get("filter"))
        if operation == "upsert":
            return self._upsert(store, list(body["ids"]), list(body["vectors"]), list(body["payloads"]))
        if operation == "delete":
            return self._delete(store, filter_)
        if operation == "delete_ids":
            return self._delete_ids(store, list(body["ids"]))
        if operation == "count":
            return self._count(filter_)
        if operation == "query":
            return [[str(pid), score, payload] for pid, score, payload in self._query(body["query"], filter_, int(body["limit"]))]
        if operation == "scroll":
            return ([str(pid), payload] for pid, payload in self._scroll(store, filter_))
        raise ValueError(f"unknown index operation {operation!r}")
