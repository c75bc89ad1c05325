"""An index owned by another process (``enclave serve``), used through that process's HTTP API.

An embedded Qdrant Edge shard belongs to one process. When ``enclave serve`` holds it, it also serves
the index's primitives on ``/internal/index/*`` (server/routers/index.py) and leaves an owner record
beside the shard: ``<index folder>/owner.json`` with its URL and a random token, readable by the owner's
user only. ``enclave ingest``, ``enclave status`` and Prefect flow runs that find the shard locked read
the record and write through the owner instead: the chat endpoint keeps answering while they ingest, and
answers from new content as soon as each batch is written.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from indexes.vector_index import VectorIndex, VectorIndexError

OWNER_FILE = "owner.json"
TOKEN_HEADER = "X-Enclave-Index-Token"


@dataclass(frozen=True)
class IndexOwner:
    """The process that holds an embedded index: its base URL (``http://127.0.0.1:8000``), the token
    its index API wants, and its pid."""

    url: str
    token: str
    pid: int

    @staticmethod
    def claim(index_folder: str | Path, url: str) -> IndexOwner:
        """Record this process as the owner of the index at ``index_folder`` (mode 0600); returns the record."""
        owner = IndexOwner(url=url.rstrip("/"), token=secrets.token_urlsafe(32), pid=os.getpid())
        path = Path(index_folder) / OWNER_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(asdict(owner), out)
        return owner

    @staticmethod
    def find(index_folder: str | Path) -> IndexOwner | None:
        """The live owner of the index at ``index_folder``, or None (no record, or its process is gone)."""
        path = Path(index_folder) / OWNER_FILE
        try:
            owner = IndexOwner(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None
        try:
            os.kill(owner.pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
        return owner

    def release(self, index_folder: str | Path) -> None:
        """Remove the record if it is still this owner's."""
        if IndexOwner.find(index_folder) == self:
            (Path(index_folder) / OWNER_FILE).unlink(missing_ok=True)


class RemoteIndex(VectorIndex):
    """The :class:`VectorIndex` of another process, over its ``/internal/index`` API.

    Usage::

        owner = IndexOwner.find(".enclave/index/enclave")       # None if no process holds it
        index = RemoteIndex(owner.url, owner.token)             # dimension asked from the owner
        index.upsert(nodes, vectors); index.ledger("hr")

    ``timeout`` in seconds per request. A refused connection or an error status raises
    VectorIndexError naming the owner's URL.
    """

    def __init__(self, url: str, token: str, dimension: int | None = None, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=f"{self.url}/internal/index", headers={TOKEN_HEADER: token}, timeout=timeout)
        info = self._call("info", {})
        if dimension is not None and dimension != info["dimension"]:
            raise VectorIndexError(
                f"the index served by {self.url} holds vectors of size {info['dimension']}, the embedder makes "
                f"{dimension}: choose another index.collection to re-index"
            )
        self.dimension = int(info["dimension"])

    def _call(self, operation: str, body: dict[str, Any]) -> Any:
        try:
            response = self._client.post(f"/{operation}", json=body)
        except httpx.TransportError as exc:
            raise VectorIndexError(f"the index owner at {self.url} is unreachable: {exc}") from exc
        if response.status_code != 200:
            raise VectorIndexError(f"the index owner at {self.url} answered {response.status_code}: {response.text[:300]}")
        return response.json()["result"]

    # -- primitives -----------------------------------------------------------------------------
    def _upsert(self, store: str, ids: list[str], vectors: list[dict], payloads: list[dict]) -> None:
        self._call("upsert", {"store": store, "ids": ids, "vectors": vectors, "payloads": payloads})

    def _delete(self, store: str, filter_: Any) -> None:
        self._call("delete", {"store": store, "filter": filter_})

    def _delete_ids(self, store: str, ids: list[str]) -> None:
        self._call("delete_ids", {"store": store, "ids": ids})

    def _scroll(self, store: str, filter_: Any) -> Iterable[tuple[Any, dict]]:
        try:
            with self._client.stream("POST", "/scroll", json={"store": store, "filter": filter_}) as response:
                if response.status_code != 200:
                    raise VectorIndexError(f"the index owner at {self.url} answered {response.status_code}")
                for line in response.iter_lines():
                    if line:
                        pid, payload = json.loads(line)
                        yield pid, payload
        except httpx.TransportError as exc:
            raise VectorIndexError(f"the index owner at {self.url} is unreachable: {exc}") from exc

    def _count(self, filter_: Any) -> int:
        return int(self._call("count", {"filter": filter_}))

    def _query(self, query: dict[str, Any], filter_: Any, limit: int) -> list[tuple[Any, float, dict]]:
        return [tuple(hit) for hit in self._call("query", {"query": query, "filter": filter_, "limit": limit})]

    def _match(self, key: str, value: str | int) -> Any:
        return {"match": [key, value]}

    def _match_any(self, key: str, values: list[str]) -> Any:
        return {"any": [key, values]}

    def _at_least(self, key: str, value: int) -> Any:
        return {"gte": [key, value]}

    def _between(self, key: str, start: str | None, end: str | None) -> Any:
        return {"between": [key, [start, end]]}

    def _filter(self, must: list[Any]) -> Any:
        return {"must": must}

    def close(self) -> None:
        """Close the connection; the owner keeps its index open."""
        self._client.close()
