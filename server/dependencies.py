"""Request-scoped values the routers share: the pipeline, the settings, and the authenticated caller.

They are ``async`` because none of them blocks: FastAPI would otherwise run each plain function in its
thread pool (40 threads), a hop per dependency per request that queues under many concurrent streams."""

from __future__ import annotations

import math

from fastapi import HTTPException, Request

from enclave.flows.answer_pipeline import AnswerPipeline
from enclave.server.authentication import AuthError, Principal
from enclave.settings import Settings


async def get_pipeline(request: Request) -> AnswerPipeline:
    return request.app.state.pipeline


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def caller(request: Request) -> Principal:
    """The authenticated principal (see server/authentication.py), within its rate limit.

    Raises HTTPException 401 (no or bad credentials, with ``WWW-Authenticate: Bearer``), 403 (no
    access), 429 (over ``server.limits.requests_per_minute``, with ``Retry-After`` in seconds). Nothing
    in the request body (a ``user`` field, a filter) can change who the caller is or widen its groups.
    """
    client_host = request.client.host if request.client else None
    try:
        principal = request.app.state.authenticator.authenticate(request.headers, client_host)
    except AuthError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        raise HTTPException(exc.status, exc.detail, headers=headers) from None
    limiter = request.app.state.rate_limiter
    if limiter is not None:
        wait = limiter.acquire(principal.caller_id)
        if wait > 0:
            raise HTTPException(429, f"rate limit: {request.app.state.settings.server.limits.requests_per_minute} "
                                     f"requests a minute; try again in {wait:.1f} s",
                                headers={"Retry-After": str(math.ceil(wait))})
    request.state.principal = principal
    return principal
