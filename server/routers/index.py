"""``/internal/index/*``: the embedded index's primitives, for the processes that cannot open it.

An embedded shard belongs to the ``enclave serve`` process. ``enclave ingest``, ``enclave status`` and
Prefect flow runs on the same machine find its owner record and call these routes through
[RemoteIndex][enclave.indexes.RemoteIndex], whose wire models they take. Every request must carry the
owner record's token in ``X-Enclave-Index-Token`` (403 otherwise); the routes exist only while this
process owns an embedded index (404 otherwise), and stay out of the OpenAPI schema. A malformed body
gets 422 (FastAPI's validation), a filter or query the backend cannot run 400. ``/backup`` answers the
whole index as a backup file (``enclave backup`` while this process serves), 503 if it cannot be written.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from enclave.indexes.index_backend import IndexBackend, IndexUnavailable
from enclave.indexes.index_backup import BackupError, write_backup
from enclave.indexes.remote_index import (
    TOKEN_HEADER,
    BackupBody,
    DeleteIdsBody,
    QueryBody,
    SelectBody,
    SetPayloadBody,
    UpsertBody,
)

router = APIRouter(prefix="/internal/index", include_in_schema=False)


def owned_index(request: Request, token: str | None = Header(None, alias=TOKEN_HEADER)) -> IndexBackend:
    """The index this server owns, for a caller with the owner record's token."""
    owner = getattr(request.app.state, "index_owner", None)
    if owner is None:
        raise HTTPException(404, "this server does not own an embedded index")
    if token is None or not secrets.compare_digest(token, owner.token):
        raise HTTPException(403, f"missing or wrong {TOKEN_HEADER}")
    return request.app.state.owned_index


def _result(value: Any) -> dict[str, Any]:
    return {"result": value}


def _checked(operation: str, call: Any) -> Any:
    try:
        return call()
    except ValueError as exc:  # a filter or query the backend cannot run
        raise HTTPException(400, f"bad {operation} request: {exc}") from None


@router.post("/info")
def info(index: IndexBackend = Depends(owned_index)) -> dict[str, Any]:
    """``{"result": {"dimension": n}}``."""
    return _result({"dimension": index.dimension})


@router.post("/upsert")
def upsert(body: UpsertBody, index: IndexBackend = Depends(owned_index)) -> dict[str, Any]:
    return _result(_checked("upsert", lambda: index.upsert(body.store, [p.point() for p in body.points])))


@router.post("/delete")
def delete(body: SelectBody, index: IndexBackend = Depends(owned_index)) -> dict[str, Any]:
    if body.filter is None:
        raise HTTPException(400, "bad delete request: a filter is required (deleting every point is not offered)")
    return _result(_checked("delete", lambda: index.delete(body.store, body.filter)))


@router.post("/delete_ids")
def delete_ids(body: DeleteIdsBody, index: IndexBackend = Depends(owned_index)) -> dict[str, Any]:
    return _result(_checked("delete_ids", lambda: index.delete_ids(body.store, body.ids)))


@router.post("/set_payload")
def set_payload(body: SetPayloadBody, index: IndexBackend = Depends(owned_index)) -> dict[str, Any]:
    return _result(_checked("set_payload", lambda: index.set_payload(body.store, body.payload, body.filter)))


@router.post("/count")
def count(body: SelectBody, index: IndexBackend = Depends(owned_index)) -> dict[str, Any]:
    return _result(_checked("count", lambda: index.count(body.store, body.filter)))


@router.post("/query")
def query(body: QueryBody, index: IndexBackend = Depends(owned_index)) -> dict[str, Any]:
    hits = _checked("query", lambda: index.query(body.request))
    return _result([[hit.id, hit.score, hit.payload] for hit in hits])


@router.post("/scroll")
def scroll(body: SelectBody, index: IndexBackend = Depends(owned_index)) -> StreamingResponse:
    """NDJSON lines ``[id, payload]``, every selected point."""
    points = _checked("scroll", lambda: index.scroll(body.store, body.filter))
    return StreamingResponse((json.dumps(item) + "\n" for item in points), media_type="application/x-ndjson")


@router.post("/backup")
def backup(body: BackupBody, index: IndexBackend = Depends(owned_index)) -> FileResponse:
    """The owned index as a backup file (``enclave.indexes.index_backup``), read while its writers wait and
    its searches go on; written beside the index's folder, streamed, then deleted."""
    beside = getattr(index, "path", None)
    folder = Path(tempfile.mkdtemp(prefix=".enclave-backup-", dir=Path(beside).parent if beside else None))
    target = folder / "backup.tar"
    try:
        write_backup(index, target, backend="edge", collection=body.collection, generation=body.generation)
    except (BackupError, IndexUnavailable, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(503, f"the backup could not be written: {exc}") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(target, media_type="application/x-tar",
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))
