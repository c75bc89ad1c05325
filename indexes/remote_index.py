"""An embedded index owned by another process (``enclave serve``), used through that process's HTTP API.

An embedded Qdrant Edge shard belongs to one process. When ``enclave serve`` holds it, it also serves
the index's primitives on ``/internal/index/*`` (``enclave.server.routers.index``) and leaves an owner
record beside the shard: ``<index folder>/owner.json`` with its URL and a random token, readable by the
owner's user only. ``enclave ingest``, ``enclave status`` and Prefect flow runs that find the shard
locked read the record and write through the owner instead: the chat endpoint keeps answering while they
ingest, and answers from new content as soon as each batch is written.

The wire format: JSON bodies of the models below, whose filters and queries are qdrant-client's own
``models.Filter`` and ``models.QueryRequest`` (Qdrant's REST shapes); ``scroll`` answers NDJSON lines
``[id, payload]``, the others ``{"result": ...}``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from pydantic import BaseModel, Field
from qdrant_client import models

from enclave.indexes.index_backend import Hit, IndexMismatch, IndexUnavailable, Point, SparseVector, Store

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


# -- the wire format ----------------------------------------------------------------------------------------------------

class WirePoint(BaseModel):
    """A [Point][enclave.indexes.Point] as JSON."""

    id: str
    payload: dict[str, Any]
    dense: list[float] | None = None
    sparse: models.SparseVector | None = None

    @classmethod
    def of(cls, point: Point) -> WirePoint:
        sparse = point.sparse
        return cls(id=point.id, payload=point.payload, dense=point.dense,
                   sparse=None if sparse is None else models.SparseVector(indices=list(sparse.indices),
                                                                         values=list(sparse.values)))

    def point(self) -> Point:
        sparse = None if self.sparse is None else SparseVector(tuple(self.sparse.indices), tuple(self.sparse.values))
        return Point(self.id, self.payload, self.dense, sparse)


class UpsertBody(BaseModel):
    store: Store
    points: list[WirePoint]


class SelectBody(BaseModel):
    """For ``delete`` (a filter is required), ``count`` and ``scroll`` (None: every point)."""

    store: Store = Store.CHUNKS
    filter: models.Filter | None = None


class DeleteIdsBody(BaseModel):
    store: Store
    ids: list[str] = Field(max_length=100_000)


class SetPayloadBody(BaseModel):
    store: Store
    payload: dict[str, Any]
    filter: models.Filter


class QueryBody(BaseModel):
    request: models.QueryRequest


class BackupBody(BaseModel):
    """For ``backup``: the collection and generation names the backup's manifest records."""

    collection: str
    generation: str


def wire_json(model: BaseModel) -> dict[str, Any]:
    """A wire model as the JSON the owner expects (qdrant-client models without their unset fields)."""
    return model.model_dump(mode="json", exclude_unset=True)


class RemoteIndex:
    """The [IndexBackend][enclave.indexes.IndexBackend] of another process, over its ``/internal/index`` API.

    Usage::

        owner = IndexOwner.find(".enclave/index/enclave")       # None if no process holds it
        backend = RemoteIndex(owner.url, owner.token)           # dimension asked from the owner
        SyncLedger(backend).entries("hr")

    ``timeout`` in seconds per request. A refused connection or an error status raises
    [IndexUnavailable][enclave.indexes.IndexUnavailable] naming the owner's URL; a ``dimension`` other
    than the owner's raises [IndexMismatch][enclave.indexes.IndexMismatch].
    """

    def __init__(self, url: str, token: str, dimension: int | None = None, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=f"{self.url}/internal/index", headers={TOKEN_HEADER: token}, timeout=timeout)
        try:
            info = self._call("info", {})
        except IndexUnavailable:
            self._client.close()
            raise
        if dimension is not None and dimension != info["dimension"]:
            self._client.close()
            raise IndexMismatch(
                f"the index served by {self.url} holds vectors of size {info['dimension']}, the embedder makes "
                f"{dimension}: choose another index.collection to re-index"
            )
        self.dimension = int(info["dimension"])

    def _call(self, operation: str, body: dict[str, Any]) -> Any:
        try:
            response = self._client.post(f"/{operation}", json=body)
        except httpx.TransportError as exc:
            raise IndexUnavailable(f"the index owner at {self.url} is unreachable: {exc}") from exc
        if response.status_code != 200:
            raise IndexUnavailable(f"the index owner at {self.url} answered {response.status_code}: {response.text[:300]}")
        return response.json()["result"]

    # -- primitives -----------------------------------------------------------------------------------------------------
    def upsert(self, store: Store, points: Sequence[Point]) -> None:
        self._call("upsert", wire_json(UpsertBody(store=store, points=[WirePoint.of(p) for p in points])))

    def delete(self, store: Store, selector: models.Filter) -> None:
        self._call("delete", wire_json(SelectBody(store=store, filter=selector)))

    def delete_ids(self, store: Store, ids: Sequence[str]) -> None:
        self._call("delete_ids", wire_json(DeleteIdsBody(store=store, ids=list(ids))))

    def set_payload(self, store: Store, payload: dict[str, Any], selector: models.Filter) -> None:
        self._call("set_payload", wire_json(SetPayloadBody(store=store, payload=payload, filter=selector)))

    def scroll(self, store: Store, selector: models.Filter | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            with self._client.stream("POST", "/scroll", json=wire_json(SelectBody(store=store, filter=selector))) as response:
                if response.status_code != 200:
                    raise IndexUnavailable(f"the index owner at {self.url} answered {response.status_code}")
                for line in response.iter_lines():
                    if line:
                        pid, payload = json.loads(line)
                        yield str(pid), payload
        except httpx.TransportError as exc:
            raise IndexUnavailable(f"the index owner at {self.url} is unreachable: {exc}") from exc

    def count(self, store: Store, selector: models.Filter | None = None) -> int:
        return int(self._call("count", wire_json(SelectBody(store=store, filter=selector))))

    def query(self, request: models.QueryRequest) -> list[Hit]:
        return [Hit(str(pid), float(score), payload)
                for pid, score, payload in self._call("query", wire_json(QueryBody(request=request)))]

    def download_backup(self, body: BackupBody, target: BinaryIO, timeout: float = 3600.0) -> None:
        """Have the owner write a backup of its index (``enclave.indexes.index_backup``: all three stores read
        while its writes wait) and stream it into ``target``; ``timeout`` in seconds for the whole backup."""
        try:
            with self._client.stream("POST", "/backup", json=wire_json(body), timeout=timeout) as response:
                if response.status_code != 200:
                    response.read()
                    raise IndexUnavailable(f"the index owner at {self.url} answered {response.status_code}: "
                                           f"{response.text[:300]}")
                for block in response.iter_bytes(1 << 20):
                    target.write(block)
        except httpx.TransportError as exc:
            raise IndexUnavailable(f"the index owner at {self.url} is unreachable: {exc}") from exc

    def close(self) -> None:
        """Close the connection; the owner keeps its index open."""
        self._client.close()
