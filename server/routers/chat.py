"""``POST /v1/chat/completions``: OpenAI-compatible chat over the indexed documents.

The last user message is the question. Citations reach OpenAI clients twice: as ``[n]`` markers and a
"Sources" list in the content, and as a structured ``citations`` field beside ``choices``. With
``stream: true`` the answer comes as server-sent events ending in ``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from flows.answer import Answer, AnswerPipeline
from server.dependencies import caller_groups, get_pipeline
from server.routers.ask import CitationOut, SearchFilterIn
from server.routers.models import ROUTE_MODEL

router = APIRouter(prefix="/v1", tags=["openai"])


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send options Enclave does not use
    model: str = ROUTE_MODEL
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    user: str | None = Field(default=None, description="Recorded only; it grants no access.")
    filter: SearchFilterIn | None = Field(
        default=None, description="Enclave extension (OpenAI clients: extra_body): only these sources, types, dates.")


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop"] = "stop"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    citations: list[CitationOut] = Field(description="Enclave extension: the passages cited as [n].")
    generator: str = Field(description="Enclave extension: the generator that answered.")


def content_with_sources(answer: Answer) -> str:
    """The answer text followed by a "Sources" list naming each cited document."""
    if not answer.citations:
        return answer.text
    lines = [f"[{c.number}] {c.title}" + (f" — {c.section}" if c.section else "") + f" ({c.uri})" for c in answer.citations]
    return answer.text + "\n\nSources:\n" + "\n".join(lines)


def _question(body: ChatCompletionRequest) -> str:
    for message in reversed(body.messages):
        if message.role == "user" and message.text().strip():
            return message.text().strip()
    raise HTTPException(status_code=422, detail="messages hold no user message with text")


def _completion(answer: Answer, model: str) -> ChatCompletion:
    return ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=model,
        choices=[Choice(message=ResponseMessage(content=content_with_sources(answer)))],
        usage=Usage(prompt_tokens=answer.tokens_in, completion_tokens=answer.tokens_out,
                    total_tokens=answer.tokens_in + answer.tokens_out),
        citations=[CitationOut(**c.__dict__) for c in answer.citations],
        generator=answer.generator,
    )


def _sse(completion: ChatCompletion) -> Iterator[str]:
    base: dict[str, Any] = {"id": completion.id, "object": "chat.completion.chunk", "created": completion.created,
                            "model": completion.model}
    content = completion.choices[0].message.content
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
         "usage": completion.usage.model_dump(), "citations": [c.model_dump() for c in completion.citations]},
    ]
    for event in events:
        yield f"data: {json.dumps(event)}\n\n"
    yield "data: [DONE]\n\n"


@router.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(
    body: ChatCompletionRequest,
    pipeline: AnswerPipeline = Depends(get_pipeline),
    groups: list[str] = Depends(caller_groups),
):
    question = _question(body)
    where = body.filter.to_search_filter() if body.filter else None
    answer = await run_in_threadpool(pipeline.ask, question, groups, None, where)
    completion = _completion(answer, body.model)
    if body.stream:
        return StreamingResponse(_sse(completion), media_type="text/event-stream")
    return completion
