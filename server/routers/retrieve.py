"""``POST /v1/retrieve``: the chunks a question finds, without an answer; the same ACL and filters as
``/v1/ask``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from flows.answer import AnswerPipeline
from server.dependencies import caller_groups, get_pipeline
from server.routers.ask import SearchFilterIn

router = APIRouter(prefix="/v1", tags=["retrieve"])


class RetrieveRequest(BaseModel):
    query: str = Field(min_length=1, max_length=4000, description="What to search for, in any language.")
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
    score: float = Field(description="Retrieval score (RRF in hybrid mode, cosine in dense, BM25 in sparse); higher is better.")
    classification: str


class RetrieveResponse(BaseModel):
    chunks: list[ChunkOut] = Field(description="Best first; only documents the caller's groups may see.")


@router.post("/retrieve", response_model=RetrieveResponse)
async def retrieve(
    body: RetrieveRequest,
    pipeline: AnswerPipeline = Depends(get_pipeline),
    groups: list[str] = Depends(caller_groups),
) -> RetrieveResponse:
    if not body.query.strip():
        raise HTTPException(status_code=422, detail="query is blank")
    where = body.filter.to_search_filter() if body.filter else None
    chunks = await run_in_threadpool(pipeline.retriever.run, body.query, groups, body.top_k, None, where, body.mode)
    return RetrieveResponse(chunks=[
        ChunkOut(id=c.id, doc_id=c.doc_id, title=c.title, uri=c.uri, section=c.section, chunk=c.chunk, text=c.text,
                 score=c.score, classification=c.classification)
        for c in chunks
    ])
