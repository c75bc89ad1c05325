"""``/internal/index/*``: the embedded index's primitives, for the processes that cannot open it.

An embedded shard belongs to the ``enclave serve`` process. ``enclave ingest``, ``enclave status`` and
Prefect flow runs on the same machine find its owner record and call these routes through
:class:`indexes.remote_index.RemoteIndex`. Every request must carry the owner record's token in
``X-Enclave-Index-Token`` (403 otherwise); the routes exist only while this process owns an embedded
index (404 otherwise), and stay out of the OpenAPI schema.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Request
from fastapi.responses import StreamingResponse

from indexes.remote_index import TOKEN_HEADER
from indexes.vector_index import VectorIndex

router = APIRouter(prefix="/internal/index", include_in_schema=False)


def owned_index(request: Request, token: str | None = Header(None, alias=TOKEN_HEADER)) -> VectorIndex:
    owner = getattr(request.app.state, "index_owner", None)
    if owner is None:
        raise HTTPException(404, "this server does not own an embedded index")
    if token is None or not secrets.compare_digest(token, owner.token):
        raise HTTPException(403, f"missing or wrong {TOKEN_HEADER}")
    return request.app.state.pipeline.index


@router.post("/{operation}")
def run_operation(operation: str, body: dict[str, Any] = Body(...), index: VectorIndex = Depends(owned_index)):
    """One primitive: ``info`` (the dimension), ``upsert``, ``delete``, ``delete_ids``, ``count``,
    ``query`` → ``{"result": ...}``; ``scroll`` → NDJSON lines ``[id, payload]``. 400 on a malformed body."""
    if operation == "info":
        return {"result": {"dimension": index.dimension}}
    try:
        result = index.execute(operation, body)
    except (ValueError, KeyError, TypeError) as exc:
        raise HTTPException(400, f"bad {operation} request: {exc}") from None
    if operation == "scroll":
        return StreamingResponse((json.dumps(item) + "\n" for item in result), media_type="application/x-ndjson")
    return {"result": result}
