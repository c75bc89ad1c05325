"""Where the configured index lives, and opening it: embedded (Qdrant Edge), a Qdrant server, or the
embedded index another process owns.

This module loads neither a model nor LlamaIndex: ``enclave status`` opens the index through it.
"""

from __future__ import annotations

from pathlib import Path

from enclave.indexes.edge_index import EdgeIndex
from enclave.indexes.index_backend import IndexBackend, IndexLocked
from enclave.indexes.remote_index import IndexOwner, RemoteIndex
from enclave.settings import Settings


def index_path(settings: Settings) -> Path:
    """Folder of the embedded index: ``<data_dir>/index/<collection>``."""
    return Path(settings.data_dir) / "index" / settings.index.collection


def open_index(settings: Settings, dimension: int | None = None) -> IndexBackend:
    """Open (creating if needed) the configured index; the caller closes it. ``dimension=None`` opens
    an existing index at its own dimension without loading a model (raises IndexMissing if there is
    none yet).

    An embedded index held by another process (``enclave serve``) is used through that process: a
    [RemoteIndex][enclave.indexes.RemoteIndex] to the owner its ``owner.json`` names. Raises
    [IndexUnavailable][enclave.indexes.IndexUnavailable] (IndexLocked when another process holds the
    index and serves no owner record)."""
    if settings.index.backend == "server":
        from qdrant_client import QdrantClient

        from enclave.indexes.server_index import ServerIndex

        key = settings.index.api_key.get_secret_value() if settings.index.api_key else None
        return ServerIndex(QdrantClient(url=settings.index.url, api_key=key), settings.index.collection, dimension)
    try:
        return EdgeIndex(index_path(settings), dimension)
    except IndexLocked:
        owner = IndexOwner.find(index_path(settings))
        if owner is None:
            raise
        return RemoteIndex(owner.url, owner.token, dimension)
