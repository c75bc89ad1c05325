"""The FastAPI application: ``create_app(settings)`` wires the answer pipeline into the routers."""

from __future__ import annotations

import gc
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Route

from enclave import __version__
from enclave.flows.answer_pipeline import AnswerPipeline
from enclave.indexes.edge_index import EdgeIndex
from enclave.indexes.remote_index import IndexOwner
from enclave.llms.fallback_router import AllGeneratorsFailed
from enclave.server.authentication import Authenticator
from enclave.server.body_limit import BodySizeLimit
from enclave.server.index_follower import IndexFollower
from enclave.server.mcp_server import McpContext, McpHttpEndpoint, create_mcp_server, http_principal
from enclave.server.metrics import install_metrics
from enclave.server.rate_limit import RateLimiter
from enclave.server.routers import ask, chat, health, index, metrics, models, page, retrieve
from enclave.settings import ServerSettings, Settings


def create_app(settings: Settings, pipeline: AnswerPipeline | None = None, index_url: str | None = None) -> FastAPI:
    """The chat endpoint's app.

    Usage::

        app = create_app(load_settings())            # builds the pipeline at startup, closes it at shutdown
        uvicorn.run(app, host="127.0.0.1", port=8000)

    A ``pipeline`` passed in is used as is and left open. Routes: ``GET /`` (the chat page), ``GET /healthz``,
    ``GET /readyz``, ``GET /metrics``, ``GET /v1/models``, ``POST /v1/ask``, ``POST /v1/retrieve``,
    ``POST /v1/chat/completions``, and MCP's Streamable HTTP at ``server.mcp.path`` (``/mcp``; see
    [enclave.server.mcp_server][]). The ``/v1`` routes need credentials (server/authentication.py: 401/403)
    and keep to ``server.limits`` (413 for a large body, 422, 429 over the rate). When no generator
    answers, requests get 503.

    ``index_url``: the URL other processes on this machine reach this server at. Given one, and an
    embedded index, the server claims the index (``owner.json`` beside the shard, see
    [RemoteIndex][enclave.indexes.RemoteIndex]) and serves it on ``/internal/index/*``, so ``enclave
    ingest`` and scheduled flow runs write through this process while it keeps answering. A pipeline
    the app builds itself follows ``enclave reindex`` to each new live generation
    ([IndexFollower][enclave.server.index_follower.IndexFollower]).

    Start-up loads the embedding model and runs it once. An app that builds its own pipeline (``enclave
    serve``) then tunes its process for serving ([tune_process][enclave.server.app.tune_process]); one given
    a ``pipeline`` leaves the process as it is.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        owned = pipeline is None
        # answers run in threads (retrieval, then a generator's blocking stream): one each, up to this many at once
        app.state.answer_executor = ThreadPoolExecutor(settings.server.answer_threads, thread_name_prefix="answer")
        app.state.pipeline = pipeline or AnswerPipeline.from_settings(settings)
        app.state.pipeline.retriever.embedder.embed_query(["warm-up"])  # load the model and run it before any request
        if owned:
            tune_process(settings.server)
        index = app.state.pipeline.index
        if index_url and isinstance(index, EdgeIndex):
            app.state.index_owner = IndexOwner.claim(index.path, index_url)
            app.state.owned_index = index
        # a pipeline built here follows `enclave reindex` to each new live generation (and is closed by the follower)
        follower = IndexFollower(app, settings, index_url, interval=settings.server.follow_interval) if owned else None
        if follower is not None:
            follower.start()
        try:
            async with AsyncExitStack() as running:
                if mcp is not None:
                    await running.enter_async_context(mcp.running())
                yield
        finally:
            app.state.answer_executor.shutdown(wait=False, cancel_futures=True)
            if app.state.index_owner is not None:
                app.state.index_owner.release(app.state.owned_index.path)
            if follower is not None:
                follower.stop()

    app = FastAPI(title="Enclave", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.index_owner = None
    app.state.owned_index = None
    app.state.authenticator = Authenticator(settings.server.auth)
    limits = settings.server.limits
    app.state.rate_limiter = RateLimiter(limits.requests_per_minute, limits.burst) if limits.requests_per_minute else None
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes, exempt=("/internal/",))

    @app.exception_handler(AllGeneratorsFailed)
    async def _no_generator(request: Request, exc: AllGeneratorsFailed) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    install_metrics(app)  # after any other add_middleware: the metrics middleware then wraps them all
    for router in (health.router, models.router, ask.router, retrieve.router, chat.router, index.router, page.router,
                   metrics.router):
        app.include_router(router)
    mcp = None
    if settings.server.mcp.enabled:  # the MCP tools, on the same pipeline, ACL and rate limits (server/mcp_server.py)
        server = create_mcp_server(McpContext(settings, lambda: app.state.pipeline, lambda: app.state.answer_executor,
                                              http_principal, app.state.rate_limiter, app.state.metrics))
        mcp = McpHttpEndpoint(server, settings, lambda: app.state.authenticator)
        app.router.routes.append(Route(settings.server.mcp.path, endpoint=mcp))
    return app


def tune_process(server: ServerSettings) -> None:
    """Settle the process for serving, once its models are loaded (``create_app``'s start-up does it when it
    builds the pipeline): torch's intra-op threads set to ``server.torch_threads`` (when torch is loaded;
    one thread keeps torch's workers from waiting for each other while other requests hold the cores), and
    with ``server.gc_freeze`` a full collection, then ``gc.freeze()``: what start-up loaded (about a million
    objects with torch and transformers) moves out of the collector's sight, so a later full collection
    walks only what requests create (34-69 ms measured under load, bench/serve_load.py) instead of holding
    every thread for 437-480 ms."""
    if server.torch_threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(server.torch_threads)
    if server.gc_freeze:
        gc.collect()
        gc.freeze()


def app_from_config() -> FastAPI:
    """The app of one worker process of ``enclave serve --workers N`` (a uvicorn factory: ``uvicorn --factory
    enclave.server.app:app_from_config --workers N`` does the same): settings from ``$ENCLAVE_CONFIG`` (else
    ``./enclave.yaml``) and ``ENCLAVE_*``, the pipeline built at start-up. Each worker is a process of its own,
    with its own model, query batches, rate limits and circuit breakers; their index must be a Qdrant server.
    Raises SettingsError for invalid settings."""
    import logging

    from enclave.settings import load_settings

    logging.getLogger("httpx").setLevel(logging.WARNING)  # as `enclave serve` has it: no log line per Ollama request
    return create_app(load_settings())
