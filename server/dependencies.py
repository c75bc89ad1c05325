"""Request-scoped values the routers share: the pipeline and the caller's groups."""

from __future__ import annotations

from fastapi import Request

from enclave.settings import Settings
from flows.answer import AnswerPipeline


def get_pipeline(request: Request) -> AnswerPipeline:
    return request.app.state.pipeline


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def caller_groups(request: Request) -> list[str]:
    """The groups whose documents the caller may see. Until authentication arrives every caller is
    anonymous and gets ``server.default_groups``; nothing in the request body can widen them."""
    return list(request.app.state.settings.server.default_groups)
