"""``POST /v1/ask``: Enclave's native question endpoint, with structured citations."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator

from flows.answer import Answer, AnswerPipeline
from indexes.vector_index import SearchFilter
from server.dependencies import caller_groups, get_pipeline

router = APIRouter(prefix="/v1", tags=["ask"])


class SearchFilterIn(BaseModel):
    """Narrows retrieval on top of the caller's ACL (which always applies)."""

    sources: list[str] = Field(default_factory=list, max_length=50, description="Source names.")
    doc_types: list[str] = Field(default_factory=list, max_length=50, description="File types, e.g. pdf, md.")
    modified_from: datetime | None = Field(default=None, description="Documents modified at or after (ISO 8601).")
    modified_to: datetime | None = Field(default=None, description="Documents modified at or before (ISO 8601).")

    @model_validator(mode="after")
    def _ordered(self) -> SearchFilterIn:
        if self.modified_from and self.modified_to and self.modified_from > self.modified_to:
            raise ValueError("modified_from is after modified_to")
        return self

    def to_search_filter(self) -> SearchFilter:
        def iso(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat()

        return SearchFilter(tuple(self.sources), tuple(self.doc_types), iso(self.modified_from), iso(self.modified_to))


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000, description="The question, in any language.")
    top_k: int | None = Field(default=None, ge=1, le=50, description="Passages to retrieve; default from settings.")
    filter: SearchFilterIn | None = Field(default=None, description="Only documents from these sources, types, dates.")


class CitationOut(BaseModel):
    number: int = Field(description="The [n] marker in the answer.")
    doc_id: str
    title: str
    uri: str
    section: str
    chunk: int
    text: str = Field(description="The cited chunk's text.")
    score: float = Field(description="Retrieval score (RRF in hybrid mode, cosine in dense, BM25 in sparse); higher is better.")


class AttemptOut(BaseModel):
    generator: str
    error: str
    seconds: float


class AskResponse(BaseModel):
    answer: str
    citations: list[CitationOut]
    generator: str = Field(description="The generator that answered.")
    model: str
    route: list[AttemptOut] = Field(description="Every generator tried, in order, with its error if it failed.")
    tokens_in: int
    tokens_out: int
    cost: float = Field(description="US dollars: tokens at the model's price, or a local generator's hardware time.")
    seconds: float


def ask_response(answer: Answer) -> AskResponse:
    return AskResponse(
        answer=answer.text,
        citations=[CitationOut(**c.__dict__) for c in answer.citations],
        generator=answer.generator, model=answer.model,
        route=[AttemptOut(**a.__dict__) for a in answer.attempts],
        tokens_in=answer.tokens_in, tokens_out=answer.tokens_out, cost=answer.cost, seconds=answer.seconds,
    )


@router.post("/ask", response_model=AskResponse)
async def ask(
    body: AskRequest,
    pipeline: AnswerPipeline = Depends(get_pipeline),
    groups: list[str] = Depends(caller_groups),
) -> AskResponse:
    if not body.question.strip():
        raise HTTPException(status_code=422, detail="question is blank")
    where = body.filter.to_search_filter() if body.filter else None
    answer = await run_in_threadpool(pipeline.ask, body.question, groups, body.top_k, where)
    return ask_response(answer)
