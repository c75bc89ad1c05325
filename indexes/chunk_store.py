"""The chunks of an index: write them with their vectors, search them for a caller, delete them by document.

Search runs in one Qdrant query: dense nearest neighbours, sparse BM25, or both as prefetches fused with
Reciprocal Rank Fusion (Cormack, Clarke & Büttcher 2009, "Reciprocal rank fusion outperforms Condorcet
and individual rank learning methods") or Qdrant's distribution-based score fusion (DBSF: each side's
scores normalised by their mean ± 3 sample standard deviations, then summed), always filtered by the caller's
groups inside the query.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qdrant_client import models

from enclave.contracts import Chunk, ScoredChunk
from enclave.indexes.index_backend import (
    DENSE,
    SPARSE,
    IndexBackend,
    IndexMismatch,
    Point,
    SparseVector,
    Store,
    all_of,
    match,
    match_any,
    now_iso,
)

#: Retrieval modes: dense nearest neighbours, sparse BM25, or both fused with RRF.
MODES = ("hybrid", "dense", "sparse")


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
    """How hybrid search fuses its two prefetches. ``method`` ``dbsf`` (the default): Qdrant's
    distribution-based score fusion, each side's scores mapped by (score - (mean - 3 sd)) / (6 sd) over
    its candidates (sd: the sample standard deviation; not clipped, so a standout hit passes 1) and
    summed (no weights, no k); ``rrf``: weighted Reciprocal Rank Fusion as Qdrant computes it, score =
    sum over prefetches of 1 / (rank / weight + k - 1) with rank from 1 (``weights`` are (dense,
    sparse)). ``prefetch`` is how many candidates each side contributes (at least the search's
    ``limit``)."""

    k: int = 60
    weights: tuple[float, float] = (1.0, 1.0)
    prefetch: int = 100
    method: str = "dbsf"


class ChunkStore:
    """The chunks store of an index: upsert, search, delete.

    Usage::

        store = ChunkStore(EdgeIndex(".enclave/index/enclave", dimension=384))
        store.upsert(chunks, vectors, sparse)            # chunks: list[Chunk]; vectors: (n, 384) float32
        store.delete_chunks_from("hr:leave.md", 7)       # drop chunks 7.. of a document that shrank
        hits = store.search(query_vector, sparse=terms, groups=["staff"], limit=5)   # list[ScoredChunk]

    A view on an [IndexBackend][enclave.indexes.IndexBackend]; whoever opened the backend closes it.
    """

    def __init__(self, backend: IndexBackend) -> None:
        self.backend = backend

    @property
    def dimension(self) -> int:
        """The size of the dense vectors, e.g. 384."""
        return self.backend.dimension

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray, sparse: Sequence[SparseVector] | None = None) -> None:
        """Write chunk points (ids = chunk ids) with their dense vectors, shape (len(chunks), dimension)
        float32, and their sparse BM25 vectors (one per chunk, see
        [Bm25Embedder][enclave.indexes.Bm25Embedder]). Points written without a sparse vector are found
        by dense search only. Raises ValueError when the counts differ, IndexMismatch for the wrong
        dimension."""
        if len(chunks) != len(vectors) or (sparse is not None and len(sparse) != len(chunks)):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} dense and {len(sparse or [])} sparse vectors")
        if len(chunks) == 0:
            return
        if vectors.shape[1] != self.dimension:
            raise IndexMismatch(f"vectors have dimension {vectors.shape[1]}, the index {self.dimension}")
        ingested_at = now_iso()
        terms = list(sparse) if sparse is not None else [None] * len(chunks)
        self.backend.upsert(Store.CHUNKS, [
            Point(chunk.id, chunk.payload(ingested_at), row.tolist(), term)
            for chunk, row, term in zip(chunks, vectors, terms)
        ])

    def delete_document(self, doc_id: str) -> None:
        """Delete every chunk of ``doc_id`` (by the indexed ``doc_id`` field: the cost follows its chunks)."""
        self.backend.delete(Store.CHUNKS, all_of(match("doc_id", doc_id)))

    def set_acl(self, doc_id: str, groups: Sequence[str], classification: str) -> None:
        """Replace the ACL (``groups``) and ``classification`` in the payload of every chunk of ``doc_id``:
        a permission change costs one payload update, no parse and no embedding."""
        self.backend.set_payload(Store.CHUNKS, {"groups": list(groups), "classification": str(classification)},
                                 all_of(match("doc_id", doc_id)))

    def delete_chunks_from(self, doc_id: str, first: int) -> None:
        """Delete chunks number ``first`` and above of ``doc_id`` (stale after the document shrank)."""
        self.backend.delete(Store.CHUNKS, all_of(match("doc_id", doc_id),
                                                models.FieldCondition(key="chunk", range=models.Range(gte=first))))

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
        (a query from [Bm25Embedder.embed_query][enclave.indexes.sparse_embedder.Bm25Embedder.embed_query]): BM25, with IDF
        from the collection. Given both: hybrid, one query whose dense and sparse prefetches are each
        filtered and fused by ``fusion`` (default [Fusion][enclave.indexes.Fusion]). ``sources`` and
        ``where`` narrow the search further. No groups means no results (fail closed); neither vector
        raises ValueError.
        """
        if vector is None and sparse is None:
            raise ValueError("search needs a dense vector, a sparse vector, or both")
        if not groups:
            return []
        narrowing = where or SearchFilter()
        must: list[Any] = [match_any("groups", list(groups))]
        sources = tuple(sources or ()) + narrowing.sources
        if sources:
            must.append(match_any("source", sources))
        if narrowing.doc_types:
            must.append(match_any("doc_type", [t.lower().lstrip(".") for t in narrowing.doc_types]))
        if narrowing.modified_from or narrowing.modified_to:
            must.append(models.FieldCondition(key="modified_at", range=models.DatetimeRange(
                gte=narrowing.modified_from, lte=narrowing.modified_to)))
        selector = models.Filter(must=must)
        dense = None if vector is None else np.asarray(vector, dtype=np.float32).tolist()
        terms = None if sparse is None or not sparse.indices else models.SparseVector(
            indices=list(sparse.indices), values=list(sparse.values))
        if dense is None and terms is None:
            return []  # a query of only stopwords matches nothing by BM25
        if dense is not None and terms is not None:
            fusion = fusion or Fusion()
            depth = max(fusion.prefetch, limit)
            request = models.QueryRequest(
                prefetch=[models.Prefetch(query=dense, using=DENSE, filter=selector, limit=depth),
                          models.Prefetch(query=terms, using=SPARSE, filter=selector, limit=depth)],
                query=models.FusionQuery(fusion=models.Fusion.DBSF) if fusion.method == "dbsf" else
                models.RrfQuery(rrf=models.Rrf(k=fusion.k, weights=list(fusion.weights))),
                filter=selector, limit=limit, with_payload=True,
            )
        else:
            request = models.QueryRequest(query=dense if dense is not None else terms,
                                          using=DENSE if dense is not None else SPARSE,
                                          filter=selector, limit=limit, with_payload=True)
        return [ScoredChunk.from_payload(hit.id, hit.score, hit.payload) for hit in self.backend.query(request)]

    def count(self, doc_id: str | None = None, source: str | None = None) -> int:
        """Number of chunk points, optionally of one document or one source."""
        must = [match("doc_id", doc_id)] if doc_id is not None else []
        must += [match("source", source)] if source is not None else []
        return self.backend.count(Store.CHUNKS, all_of(*must) if must else None)

    def chunk_ids(self, doc_id: str) -> set[str]:
        """Point ids of the chunks of ``doc_id``."""
        return {pid for pid, _ in self.backend.scroll(Store.CHUNKS, all_of(match("doc_id", doc_id)))}

    def points(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every chunk point as (point id, payload), in id order."""
        return self.backend.scroll(Store.CHUNKS, None)
