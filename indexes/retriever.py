"""Top-k retrieval filtered by the caller's groups; also a LlamaIndex ``BaseRetriever``."""

from __future__ import annotations

from collections.abc import Sequence

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode

from indexes.embedder import DenseEmbedder
from indexes.vector_index import ScoredChunk, VectorIndex


class Retriever(BaseRetriever):
    """Embeds a question and returns the nearest chunks the caller may see.

    Usage::

        retriever = Retriever(embedder, index, top_k=5)
        chunks = retriever.run("How many leave days?", groups=["staff"])   # list[ScoredChunk], best first

        # in LlamaIndex query engines and agents, bound to a caller's groups:
        nodes = retriever.for_groups(["staff"]).retrieve("How many leave days?")  # list[NodeWithScore]

    Every search is filtered by ``groups`` inside the Qdrant query; no groups, no results.
    """

    def __init__(self, embedder: DenseEmbedder, index: VectorIndex, top_k: int = 5, groups: Sequence[str] = ()) -> None:
        super().__init__()
        self.embedder = embedder
        self.index = index
        self.top_k = top_k
        self.groups = tuple(groups)

    def run(
        self, query: str, groups: Sequence[str], top_k: int | None = None, sources: Sequence[str] | None = None
    ) -> list[ScoredChunk]:
        """The ``top_k`` chunks nearest to ``query`` whose ACL shares a group with ``groups``."""
        if not groups or not query.strip():
            return []
        vector = self.embedder.embed([query])[0]
        return self.index.search(vector, groups=groups, limit=top_k or self.top_k, sources=sources)

    def for_groups(self, groups: Sequence[str]) -> Retriever:
        """A retriever bound to ``groups``, for LlamaIndex's ``retrieve``."""
        return Retriever(self.embedder, self.index, self.top_k, groups)

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
