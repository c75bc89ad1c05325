"""``POST /v1/retrieve``: the chunks a question finds, without an answer; the same ACL and filters as
``/v1/ask``."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from enclave.flows.answer_pipeline import AnswerPipeline
from enclave.server.authentication import Principal
from enclave.server.dependencies import caller, get_pipeline
from enclave.server.routers.ask import SearchFilterIn

router = APIRouter(prefix="/v1", tags=["retrieve"])


class RetrieveRequest(BaseModel):
    query: str = Field(min_length=1, max_length=100_000,
                       description="What to search for, in any language (at most server.limits.max_question_chars).")
    top_k: int = Field(default=10, ge=1, le=100, description="Chunks to return.")
    mode: Literal["hybrid", "dense", "sparse"] | None = Field(
        default=None, description="Retrieval mode; default from settings (hybrid).")
    filter: SearchFilterIn | None = Field(default=None, description="Only documents from these sources, types, dates.")


class ChunkOut(BaseModel):
    id: str = Field(description="The chunk's point id.")
    doc_id: str
    title: str
    uri: str
    section: str
    chunk: int = Field(description="The chunk's number within its document, from 0.")
    text: str
    score: float = Field(description="Retrieval score (fused in hybrid mode, cosine in dense, BM25 in sparse); higher is better.")
    classification: str


class RetrieveResponse(BaseModel):
    chunks: list[ChunkOut] = Field(description="Best first; only documents the caller's groups may see.")


@router.post("/retrieve", response_model=RetrieveResponse)
async def retrieve(
    body: RetrieveRequest,
    request: Request,
    pipeline: AnswerPipeline = Depends(get_pipeline),
    principal: Principal = Depends(caller),
) -> RetrieveResponse:
    if not body.query.strip():
        raise HTTPException(status_code=422, detail="query is blank")
    limit = request.app.state.settings.server.limits.max_question_chars
    if len(body.query) > limit:
        raise HTTPException(422, f"the query has {len(body.query)} characters; the limit is {limit} "
                                 "(server.limits.max_question_chars)")
    where = body.filter.to_search_filter() if body.filter else None
    chunks = await asyncio.get_running_loop().run_in_executor(request.app.state.answer_executor, partial(
        pipeline.retriever.run, body.query, principal.groups, body.top_k, None, where, body.mode))
    return RetrieveResponse(chunks=[
        ChunkOut(id=c.id, doc_id=c.doc_id, title=c.title, uri=c.uri, section=c.section, chunk=c.chunk, text=c.text,
                 score=c.score, classification=c.classification)
        for c in chunks
    ])
