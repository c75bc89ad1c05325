"""Top-k retrieval filtered by the caller's groups: hybrid (dense + BM25, fused by DBSF or RRF), dense or sparse;
also a LlamaIndex ``BaseRetriever``."""

from __future__ import annotations

from collections.abc import Sequence

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import (
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)

from enclave.contracts import ScoredChunk
from enclave.indexes.chunk_store import MODES, ChunkStore, Fusion, SearchFilter
from enclave.indexes.embedder_contract import Embedder
from enclave.indexes.query_batcher import QueryBatcher
from enclave.indexes.sparse_embedder import Bm25Embedder


class Retriever(BaseRetriever):
    """Embeds a question and returns the best chunks the caller may see.

    Usage::

        retriever = Retriever(embedder, ChunkStore(backend), sparse_embedder=Bm25Embedder(), top_k=5)   # hybrid
        chunks = retriever.run("How many leave days?", groups=["staff"])   # list[ScoredChunk], best first
        chunks = retriever.run("leave days", groups=["staff"], mode="sparse",
                               where=SearchFilter(doc_types=("pdf",), modified_from="2026-01-01T00:00:00Z"))

        # in LlamaIndex query engines and agents, bound to a caller's groups:
        nodes = retriever.for_groups(["staff"]).retrieve("How many leave days?")  # list[NodeWithScore]

    ``mode`` is ``hybrid`` (dense and BM25 prefetches fused by ``fusion`` in one Qdrant query, the
    default), ``dense`` or ``sparse``; hybrid and sparse need ``sparse_embedder``. Every search is
    filtered by ``groups`` inside the Qdrant query; no groups, no results. Raises ValueError for an
    unknown mode.

    ``max_batch`` > 1: queries that several threads run at once are embedded together, up to ``max_batch``
    per pass of the model, a batch with other callers' queries waiting filling for up to ``max_wait``
    seconds ([QueryBatcher][enclave.indexes.query_batcher.QueryBatcher]; ``for_groups`` retrievers share
    it). A query on its own waits for nothing. The default, 1, embeds each query by itself.
    """

    def __init__(
        self,
        embedder: Embedder,
        store: ChunkStore,
        top_k: int = 5,
        groups: Sequence[str] = (),
        sparse_embedder: Bm25Embedder | None = None,
        mode: str = "hybrid",
        fusion: Fusion | None = None,
        max_batch: int = 1,
        max_wait: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedder = embedder
        self.store = store
        self.top_k = top_k
        self.groups = tuple(groups)
        self.sparse_embedder = sparse_embedder
        self.mode = self._checked(mode)
        self.fusion = fusion or Fusion()
        self.batcher = QueryBatcher(embedder, sparse_embedder, max_batch, max_wait) if max_batch > 1 else None

    def _checked(self, mode: str) -> str:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode != "dense" and self.sparse_embedder is None:
            raise ValueError(f"retrieval mode {mode!r} needs a sparse embedder (Bm25Embedder)")
        return mode

    def run(
        self,
        query: str,
        groups: Sequence[str],
        top_k: int | None = None,
        sources: Sequence[str] | None = None,
        where: SearchFilter | None = None,
        mode: str | None = None,
    ) -> list[ScoredChunk]:
        """The ``top_k`` best chunks for ``query`` whose ACL shares a group with ``groups``, narrowed by
        ``sources`` and ``where``; ``mode`` overrides the retriever's for this call."""
        mode = self._checked(mode) if mode else self.mode
        if not groups or not query.strip():
            return []
        if self.batcher is not None:
            vectors = self.batcher.encode([query], dense=mode != "sparse", sparse=mode != "dense")
            dense = vectors.dense[0] if vectors.dense is not None else None
            sparse = vectors.sparse[0] if vectors.sparse is not None else None
        else:
            dense = self.embedder.embed_query([query])[0] if mode != "sparse" else None
            sparse = self.sparse_embedder.embed_query(query) if mode != "dense" else None
        return self.store.search(dense, sparse=sparse, groups=groups, limit=top_k or self.top_k, sources=sources,
                                 where=where, fusion=self.fusion)

    def for_groups(self, groups: Sequence[str]) -> Retriever:
        """A retriever bound to ``groups``, for LlamaIndex's ``retrieve`` (its queries batched with this one's)."""
        bound = Retriever(self.embedder, self.store, self.top_k, groups, self.sparse_embedder, self.mode, self.fusion)
        bound.batcher = self.batcher
        return bound

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [
            NodeWithScore(
                node=TextNode(
                    id_=chunk.id,
                    text=chunk.text,
                    metadata={"title": chunk.title, "uri": chunk.uri, "section": chunk.section, "chunk": chunk.chunk},
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=chunk.doc_id)},
                ),
                score=chunk.score,
            )
            for chunk in self.run(query_bundle.query_str, self.groups)
        ]
