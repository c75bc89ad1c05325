"""The FastAPI application: ``create_app(settings)`` wires the answer pipeline into the routers."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from enclave import __version__
from enclave.settings import Settings
from flows.answer import AnswerPipeline
from llms.generator_chain import AllGeneratorsFailed
from server.routers import ask, chat, health, models


def create_app(settings: Settings, pipeline: AnswerPipeline | None = None) -> FastAPI:
    """The chat endpoint's app.

    Usage::

        app = create_app(load_settings())            # builds the pipeline at startup, closes it at shutdown
        uvicorn.run(app, host="127.0.0.1", port=8000)

    A ``pipeline`` passed in is used as is and left open. Routes: ``GET /healthz``, ``GET /v1/models``,
    ``POST /v1/ask``, ``POST /v1/chat/completions``. When no generator answers, requests get 503.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        owned = pipeline is None
        app.state.pipeline = pipeline or AnswerPipeline.from_settings(settings)
        app.state.pipeline.retriever.embedder.model  # load the model before the first request
        try:
            yield
        finally:
            if owned:
                app.state.pipeline.close()

    app = FastAPI(title="Enclave", version=__version__, lifespan=lifespan)
    app.state.settings = settings

    @app.exception_handler(AllGeneratorsFailed)
    async def _no_generator(request: Request, exc: AllGeneratorsFailed) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    for router in (health.router, models.router, ask.router, chat.router):
        app.include_router(router)
    return app
