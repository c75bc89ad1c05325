"""``POST /v1/ask``: Enclave's native question endpoint, with structured citations."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from flows.answer import Answer, AnswerPipeline
from server.dependencies import caller_groups, get_pipeline

router = APIRouter(prefix="/v1", tags=["ask"])


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000, description="The question, in any language.")
    top_k: int | None = Field(default=None, ge=1, le=50, description="Passages to retrieve; default from settings.")


class CitationOut(BaseModel):
    number: int = Field(description="The [n] marker in the answer.")
    doc_id: str
    title: str
    uri: str
    section: str
    chunk: int
    text: str = Field(description="The cited chunk's text.")
    score: float = Field(description="Cosine similarity of chunk and question.")


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
    seconds: float


def ask_response(answer: Answer) -> AskResponse:
    return AskResponse(
        answer=answer.text,
        citations=[CitationOut(**c.__dict__) for c in answer.citations],
        generator=answer.generator, model=answer.model,
        route=[AttemptOut(**a.__dict__) for a in answer.attempts],
        tokens_in=answer.tokens_in, tokens_out=answer.tokens_out, seconds=answer.seconds,
    )


@router.post("/ask", response_model=AskResponse)
async def ask(
    body: AskRequest,
    pipeline: AnswerPipeline = Depends(get_pipeline),
    groups: list[str] = Depends(caller_groups),
) -> AskResponse:
    if not body.question.strip():
        raise HTTPException(status_code=422, detail="question is blank")
    answer = await run_in_threadpool(pipeline.ask, body.question, groups, body.top_k)
    return ask_response(answer)
