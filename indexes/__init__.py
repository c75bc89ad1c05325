"""Parse, chunk, embed, store and retrieve: from a SourceDocument to Qdrant points and back."""

from indexes.chunker import MarkdownChunker, point_id
from indexes.edge_index import EdgeIndex
from indexes.embedder import DenseEmbedder, EmbedderError
from indexes.parser import DocumentParser, ParseError
from indexes.retriever import Retriever
from indexes.server_index import ServerIndex
from indexes.vector_index import LedgerEntry, ScoredChunk, VectorIndex, VectorIndexError

__all__ = [
    "DenseEmbedder", "DocumentParser", "EdgeIndex", "EmbedderError", "LedgerEntry", "MarkdownChunker",
    "ParseError", "Retriever", "ScoredChunk", "ServerIndex", "VectorIndex", "VectorIndexError", "point_id",
]
