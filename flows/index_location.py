"""Where the configured index lives, and opening it: embedded (Qdrant Edge), a Qdrant server, or the
embedded index another process owns.

An index has generations ([enclave.indexes.index_generations][]): readers and writers open the live
one, which ``enclave reindex`` switches atomically. On Edge the live generation is named by
``<data_dir>/index/<collection>.live`` (absent: the folder ``<collection>`` itself); on a server by the
Qdrant alias ``<collection>``.

This module loads neither a model nor LlamaIndex: ``enclave status`` opens the index through it.
"""

from __future__ import annotations

from pathlib import Path

from enclave.indexes.edge_index import EdgeIndex
from enclave.indexes.index_backend import IndexBackend, IndexLocked
from enclave.indexes.index_generations import EdgeGenerations, IndexGenerations, ServerGenerations
from enclave.indexes.remote_index import IndexOwner, RemoteIndex
from enclave.settings import Settings


def index_root(settings: Settings) -> Path:
    """Folder of the embedded indexes' generations: ``<data_dir>/index``."""
    return Path(settings.data_dir) / "index"


def generations(settings: Settings) -> IndexGenerations:
    """The configured collection's generations, on Edge or on the Qdrant server."""
    if settings.index.backend == "server":
        from qdrant_client import QdrantClient

        key = settings.index.api_key.get_secret_value() if settings.index.api_key else None
        return ServerGenerations(QdrantClient(url=settings.index.url, api_key=key), settings.index.collection)
    return EdgeGenerations(index_root(settings), settings.index.collection)


def index_path(settings: Settings) -> Path:
    """Folder of the embedded index's live generation: ``<data_dir>/index/<collection>`` until a re-index,
    then the one ``<collection>.live`` names (``<data_dir>/index/<collection>__<timestamp>``)."""
    return index_root(settings) / EdgeGenerations(index_root(settings), settings.index.collection).live()


def open_index(settings: Settings, dimension: int | None = None) -> IndexBackend:
    """Open (creating if needed) the configured index's live generation; the caller closes it.
    ``dimension=None`` opens an existing index at its own dimension without loading a model (raises
    IndexMissing if there is none yet).

    An embedded index held by another process (``enclave serve``) is used through that process: a
    [RemoteIndex][enclave.indexes.RemoteIndex] to the owner its ``owner.json`` names. Raises
    [IndexUnavailable][enclave.indexes.IndexUnavailable] (IndexLocked when another process holds the
    index and serves no owner record)."""
    if settings.index.backend == "server":
        server = generations(settings)
        assert isinstance(server, ServerGenerations)
        return server.open_live(dimension)
    path = index_path(settings)
    try:
        return EdgeIndex(path, dimension)
    except IndexLocked:
        owner = IndexOwner.find(path)
        if owner is None:
            raise
        return RemoteIndex(owner.url, owner.token, dimension)
