"""Generations of an index: a new one built beside the live one, an atomic switch of readers to it, and
the old one dropped. ``enclave reindex`` (the ``reindex`` flow) drives these; everything that opens the
index opens the live generation.

A generation is named ``<collection>__<UTC timestamp>`` (the first index, built before any re-index, is
``<collection>`` itself). Two places keep which one is live:

- [EdgeGenerations][enclave.indexes.index_generations.EdgeGenerations]: embedded indexes are folders
  under one root; the file ``<collection>.live`` names the live one and is replaced atomically
  (``os.replace``), the Edge counterpart of an alias.
- [ServerGenerations][enclave.indexes.index_generations.ServerGenerations]: a generation's three
  collections (``<name>``, ``<name>_ledger``, ``<name>_runs``) are reached through the Qdrant aliases
  ``<collection>``, ``<collection>_ledger`` and ``<collection>_runs``, all three moved in one
  ``update_collection_aliases`` call (atomic on the server).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from qdrant_client import QdrantClient, models

from enclave.indexes.edge_index import LOCK_FILE, EdgeIndex
from enclave.indexes.index_backend import IndexBackend, IndexUnavailable, Store
from enclave.indexes.server_index import ServerIndex

#: Between a collection's name and a generation's timestamp.
SEPARATOR = "__"
#: Suffix of the file that names an embedded index's live generation.
LIVE_SUFFIX = ".live"


class IndexGenerations(Protocol):
    """The generations of one collection.

    Usage::

        generations = EdgeGenerations(Path(".enclave/index"), "enclave")
        name = generations.new_name()                     # "enclave__20261129T101500123456"
        index = generations.open(name, dimension=384)     # build it beside the live one, then close it
        old = generations.live()
        generations.switch(name)                          # readers move to the new generation at once
        generations.drop(old, wait=30.0)                  # True once it is gone

    ``live`` is the name readers open; ``switch`` makes ``name`` live atomically; ``drop`` removes a
    generation that is not live (raises ValueError for the live one) and returns False when it is still
    in use after ``wait`` seconds (an embedded one a server process has not yet let go of).
    """

    collection: str

    def live(self) -> str: ...

    def new_name(self) -> str: ...

    def open(self, name: str, dimension: int | None = None) -> IndexBackend: ...

    def switch(self, name: str) -> None: ...

    def drop(self, name: str, wait: float = 0.0) -> bool: ...

    def names(self) -> list[str]: ...


def new_generation_name(collection: str) -> str:
    """``<collection>__<UTC timestamp to the microsecond>``; later names sort after earlier ones."""
    return f"{collection}{SEPARATOR}{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}"


class EdgeGenerations:
    """The generations of an embedded index: folders ``<root>/<name>``, the live one named by
    ``<root>/<collection>.live`` (JSON ``{"generation": name, "switched_at": ISO 8601}``).

    Usage::

        generations = EdgeGenerations(Path(".enclave/index"), "enclave")
        generations.live()        # "enclave" before the first re-index

    ``drop`` waits for the generation's lock (held by whichever process still has it open, e.g. ``enclave
    serve`` until it has moved to the new one) before deleting the folder.
    """

    def __init__(self, root: Path, collection: str) -> None:
        self.root = Path(root)
        self.collection = collection

    @property
    def live_file(self) -> Path:
        return self.root / f"{self.collection}{LIVE_SUFFIX}"

    def live(self) -> str:
        try:
            return json.loads(self.live_file.read_text(encoding="utf-8"))["generation"]
        except FileNotFoundError:
            return self.collection

    def new_name(self) -> str:
        return new_generation_name(self.collection)

    def open(self, name: str, dimension: int | None = None) -> EdgeIndex:
        return EdgeIndex(self.root / name, dimension)

    def switch(self, name: str) -> None:
        if not (self.root / name / "chunks").is_dir():
            raise IndexUnavailable(f"there is no generation {name!r} under {self.root} to switch to")
        staged = self.live_file.with_name(self.live_file.name + ".tmp")
        with open(staged, "w", encoding="utf-8") as out:
            json.dump({"generation": name, "switched_at": datetime.now(UTC).isoformat(timespec="seconds")}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staged, self.live_file)  # atomic: a reader sees the old name or the new one
        directory = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def drop(self, name: str, wait: float = 0.0) -> bool:
        if name == self.live():
            raise ValueError(f"{name!r} is the live generation; switch to another before dropping it")
        path = self.root / name
        if not path.exists():
            return True
        deadline = time.monotonic() + wait
        while True:
            handle = open(path / LOCK_FILE, "a+b")  # noqa: SIM115 - closed below
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.2)
                continue
            try:
                shutil.rmtree(path)
            finally:
                handle.close()
            return True

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and (
            p.name == self.collection or p.name.startswith(self.collection + SEPARATOR)))


class ServerGenerations:
    """The generations of an index on a Qdrant server, behind the aliases ``<collection>``,
    ``<collection>_ledger`` and ``<collection>_runs``.

    Usage::

        generations = ServerGenerations(QdrantClient(url="http://qdrant:6333"), "enclave")
        index = generations.open_live(dimension=384)    # a fresh install starts as a generation behind the aliases

    An index created before generations existed has plain collections where the aliases go: its first
    ``switch`` deletes them and creates the aliases in two calls, so readers see no index for that moment.
    Errors talking to the server raise [IndexUnavailable][enclave.indexes.IndexUnavailable].
    """

    def __init__(self, client: QdrantClient, collection: str) -> None:
        self.client = client
        self.collection = collection

    def _aliases(self) -> dict[str, str]:
        try:
            return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}
        except Exception as exc:  # qdrant-client raises transport and HTTP errors of many types
            raise IndexUnavailable(f"Qdrant server unavailable for collection {self.collection!r}: {exc}") from exc

    def live(self) -> str:
        return self._aliases().get(self.collection, self.collection)

    def new_name(self) -> str:
        return new_generation_name(self.collection)

    def open(self, name: str, dimension: int | None = None) -> ServerIndex:
        """The generation ``name``, on this object's client, which closing the index leaves open: the
        re-index closes the new generation, then switches to it with the same client."""
        return ServerIndex(self.client, name, dimension, owns_client=False)

    def open_live(self, dimension: int | None = None) -> ServerIndex:
        """The live generation through its aliases; with ``dimension`` and no index yet, a first
        generation is created behind the aliases (so a later re-index switches atomically)."""
        if dimension is not None and self.collection not in self._aliases() \
                and not self.client.collection_exists(self.collection):
            name = self.new_name()
            ServerIndex(self.client, name, dimension)  # creates its three collections
            self.switch(name)
        return ServerIndex(self.client, self.collection, dimension)

    def switch(self, name: str) -> None:
        aliases = self._aliases()
        operations: list[models.CreateAliasOperation | models.DeleteAliasOperation] = []
        for store, alias in ServerIndex.collection_names(self.collection).items():
            target = ServerIndex.collection_names(name)[store]
            if not self.client.collection_exists(target):
                raise IndexUnavailable(f"there is no collection {target!r} to switch {alias!r} to")
            if alias in aliases:
                operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
            elif self.client.collection_exists(alias):  # a plain collection from before generations
                self.client.delete_collection(alias)
            operations.append(models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=target, alias_name=alias)))
        self.client.update_collection_aliases(change_aliases_operations=operations)

    def drop(self, name: str, wait: float = 0.0) -> bool:
        """A server does not say who still reads a collection: readers get ``wait`` seconds (the grace) to
        finish what they started on it before its collections are deleted."""
        if name == self.live():
            raise ValueError(f"{name!r} is the live generation; switch to another before dropping it")
        time.sleep(wait)
        for store in Store:
            self.client.delete_collection(ServerIndex.collection_names(name)[store])
        return True

    def names(self) -> list[str]:
        aliases = self._aliases()
        return sorted(c.name for c in self.client.get_collections().collections
                      if c.name not in aliases and (c.name == self.collection or (
                          c.name.startswith(self.collection + SEPARATOR) and not c.name.endswith(("_ledger", "_runs")))))
