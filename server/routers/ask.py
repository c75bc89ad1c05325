"""``POST /v1/ask``: Enclave's native question endpoint, with structured citations.

With ``"stream": true`` the answer comes as server-sent events: ``token`` (``{"text"}``: append it),
``restart`` (``{"generator", "reason"}``: the generator failed mid-answer; discard the text so far, the
next generator's answer follows), ``answer`` (the whole [AskResponse][enclave.server.routers.ask.AskResponse], last) and ``error``
(``{"detail"}``, when every generator failed after the answer had begun). What fails before the first
token is an ordinary HTTP error: 401/403/413/422/429, or 503 when no generator answers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, model_validator

from enclave.contracts import Answer
from enclave.flows.answer_pipeline import Answered, AnswerPipeline
from enclave.indexes.chunk_store import SearchFilter
from enclave.llms.fallback_router import AllGeneratorsFailed, Restart, Token
from enclave.server.answer_stream import AnswerStream
from enclave.server.authentication import Principal
from enclave.server.dependencies import caller, get_pipeline
from enclave.server.request_limits import check_conversation

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


class Turn(BaseModel):
    """An earlier turn of the conversation."""

    role: Literal["user", "assistant"]
    content: str = Field(max_length=100_000)


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=100_000,
                          description="The question, in any language (at most server.limits.max_question_chars).")
    top_k: int | None = Field(default=None, ge=1, le=50, description="Passages to retrieve; default from settings.")
    filter: SearchFilterIn | None = Field(default=None, description="Only documents from these sources, types, dates.")
    history: list[Turn] = Field(
        default_factory=list, max_length=1000,
        description="Earlier turns, oldest first: a follow-up is condensed with them into a standalone question.")
    stream: bool = Field(default=False, description="Answer as server-sent events (token, restart, answer, error).")


class CitationOut(BaseModel):
    number: int = Field(description="The [n] marker in the answer.")
    doc_id: str
    title: str
    uri: str
    section: str
    chunk: int
    text: str = Field(description="The cited chunk's text.")
    score: float = Field(description="Retrieval score (fused in hybrid mode, cosine in dense, BM25 in sparse); higher is better.")


class AttemptOut(BaseModel):
    generator: str
    outcome: Literal["answered", "failed", "skipped", "not_sent"] = Field(
        description="answered; failed (down, timed out, 5xx/429, unknown model, broken stream); skipped (its circuit "
                    "breaker is open); not_sent (the egress policy kept the request local).")
    error: str = Field(description="Why it did not answer; empty when it answered.")
    seconds: float


class AskResponse(BaseModel):
    """A cited answer: the text with ``[n]`` markers, the cited passages, the route taken, tokens and cost."""

    answer: str
    question: str = Field(description="What was retrieved for: the question, or the standalone question "
                                      "condensed from it and the history.")
    citations: list[CitationOut]
    generator: str = Field(description="The generator that answered.")
    model: str
    route: list[AttemptOut] = Field(description="Every generator tried, in order, with its error if it failed.")
    tokens_in: int
    tokens_out: int
    cost: float = Field(description="US dollars: tokens at the model's price, or a local generator's hardware time.")
    seconds: float
    answered: bool = Field(description="False when the documents do not answer the question and Enclave says so "
                                       "(the answer is then a refusal with no citations).")
    abstention: str = Field(default="", description="Why it did not answer; empty when it answered.")


def ask_response(answer: Answer) -> AskResponse:
    return AskResponse(
        answer=answer.text, question=answer.question,
        citations=[CitationOut(**c.__dict__) for c in answer.citations],
        generator=answer.generator, model=answer.model,
        route=[AttemptOut(**a.__dict__) for a in answer.attempts],
        tokens_in=answer.tokens_in, tokens_out=answer.tokens_out, cost=answer.cost, seconds=answer.seconds,
        answered=answer.answered, abstention=answer.abstention,
    )


@router.post("/ask", response_model=AskResponse, responses={
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or server-sent events with stream: true."},
    503: {"description": "No generator on the route could answer."}})
async def ask(
    body: AskRequest,
    request: Request,
    pipeline: AnswerPipeline = Depends(get_pipeline),
    principal: Principal = Depends(caller),
):
    history = [turn.model_dump() for turn in body.history]
    check_conversation(request.app.state.settings.server.limits, body.question, history)
    where = body.filter.to_search_filter() if body.filter else None
    stream = await AnswerStream.start(request, lambda: pipeline.stream(
        body.question.strip(), principal.groups, body.top_k, where, principal.name, history))
    if body.stream:
        return StreamingResponse(_events(stream), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return ask_response((await stream.answer()).answer)


def sse(event: str, data: object) -> str:
    """One server-sent event: ``event: <name>`` and its JSON ``data``."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(stream: AnswerStream) -> AsyncIterator[str]:
    try:
        async for event in stream:
            if isinstance(event, Token):
                yield sse("token", {"text": event.text})
            elif isinstance(event, Restart):
                yield sse("restart", {"generator": event.generator, "reason": event.reason})
            elif isinstance(event, Answered):
                yield sse("answer", ask_response(event.answer).model_dump())
    except AllGeneratorsFailed as exc:
        yield sse("error", {"detail": str(exc)})
