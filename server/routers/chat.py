"""``POST /v1/chat/completions``: OpenAI-compatible chat over the indexed documents.

The last user message is the question; the messages before it are the history a follow-up is
condensed with. Citations reach OpenAI clients twice: as ``[n]`` markers and a "Sources" list in the
content, and as a structured ``citations`` field beside ``choices`` (in the last chunk when streaming).
With ``stream: true`` the tokens come as server-sent ``chat.completion.chunk`` events as the generator
writes them, ending in ``data: [DONE]``. OpenAI's stream cannot take text back: when a generator fails
mid-answer, a notice says so in the content and the next generator's answer follows it.

For Open WebUI (verified with 0.12.4, tests/server/test_open_webui.py), a stream also carries its ``source``
events, one chunk each with an empty delta, just before the last chunk: Open WebUI shows them as the message's
sources and links each ``[n]`` in the text to its passage (title, section, text). Open WebUI counts sources by
position, so passages 1 to the highest ``[n]`` in the text are sent. Other clients ignore the extra ``event`` field.
With ``stream_options: {"include_usage": true}`` a last chunk with no choices carries the usage, as OpenAI's does.

``model`` picks the route (``GET /v1/models``): ``enclave`` tries every generator in order,
``enclave/<generator>`` only that one; any other name is 404.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from enclave.contracts import Answer, ScoredChunk
from enclave.flows.answer_pipeline import Answered, AnswerPipeline, cited_numbers
from enclave.llms.fallback_router import AllGeneratorsFailed, Restart, Token
from enclave.prompts.condense_prompt import without_sources
from enclave.server.answer_stream import AnswerStream
from enclave.server.authentication import Principal
from enclave.server.dependencies import caller, get_pipeline, get_settings
from enclave.server.request_limits import check_conversation, check_max_tokens
from enclave.server.routers.ask import CitationOut, SearchFilterIn
from enclave.server.routers.models import ROUTE_MODEL, route_generators
from enclave.settings import Settings

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


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options`` (Open WebUI sends ``{"include_usage": true}`` for a model with its *usage* capability)."""

    model_config = ConfigDict(extra="allow")
    include_usage: bool = Field(default=False, description="Add a last chunk with no choices that carries the usage.")


class ChatCompletionRequest(BaseModel):
    # OpenAI clients send options Enclave does not use: temperature, tools (Open WebUI sends its built-in tools,
    # ~25 kB: Enclave never calls a tool), tool_choice, seed, ...
    model_config = ConfigDict(extra="allow")
    model: str = ROUTE_MODEL
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000,
                                        description="At most server.limits.max_messages.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, description="At most server.limits.max_tokens.")
    max_completion_tokens: int | None = Field(default=None, ge=1, description="As max_tokens.")
    user: str | None = Field(default=None, description="Ignored: it grants no access and names nobody.")
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
    answered: bool = Field(description="Enclave extension: false when the documents do not answer the question.")


def sources_list(answer: Answer) -> str:
    """The "Sources" list naming each cited document, to follow the answer text ("" without citations)."""
    if not answer.citations:
        return ""
    lines = [f"[{c.number}] {c.title}" + (f" — {c.section}" if c.section else "") + f" ({c.uri})" for c in answer.citations]
    return "\n\nSources:\n" + "\n".join(lines)


def content_with_sources(answer: Answer) -> str:
    """The answer text followed by a "Sources" list naming each cited document."""
    return answer.text + sources_list(answer)


def _conversation(body: ChatCompletionRequest) -> tuple[str, list[dict[str, str]]]:
    """The last user message with text, and the user and assistant turns before it (the history)."""
    for position in range(len(body.messages) - 1, -1, -1):
        message = body.messages[position]
        if message.role == "user" and message.text().strip():
            history = [{"role": m.role, "content": without_sources(m.text())}
                       for m in body.messages[:position] if m.role in ("user", "assistant") and m.text().strip()]
            return message.text().strip(), history
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
        generator=answer.generator, answered=answer.answered,
    )


class SourceRef(BaseModel):
    name: str = Field(description="What Open WebUI shows: the document's title and section.")
    id: str = Field(description="Unique per passage: <doc_id>#<chunk>.")
    url: str | None = Field(default=None, description="The document's uri when it is http(s): Open WebUI links it.")


class SourceMetadata(BaseModel):
    source: str = Field(description="As SourceRef.id: Open WebUI groups sources by it.")
    name: str


class SourceData(BaseModel):
    source: SourceRef
    document: list[str] = Field(description="The passage's text (one).")
    metadata: list[SourceMetadata]


class SourceEvent(BaseModel):
    """Open WebUI's ``source`` event (its chat stream's ``event`` field): one passage of the answer."""

    type: Literal["source"] = "source"
    data: SourceData


def source_event(passage: ScoredChunk) -> SourceEvent:
    """The Open WebUI ``source`` event of one passage given to the generator."""
    name = passage.title + (f" — {passage.section}" if passage.section else "")
    ref = f"{passage.doc_id}#{passage.chunk}"
    url = passage.uri if passage.uri.startswith(("http://", "https://")) else None
    return SourceEvent(data=SourceData(source=SourceRef(name=name, id=ref, url=url), document=[passage.text],
                                       metadata=[SourceMetadata(source=ref, name=name)]))


def source_events(answer: Answer, streamed: str) -> list[SourceEvent]:
    """Open WebUI's ``source`` events for an answer whose text was streamed as ``streamed``: passages 1 to the
    highest ``[n]`` in that text or in the answer's citations (Open WebUI maps ``[n]`` to its n-th source, and
    the streamed markers can differ from the final ones), so every marker opens its own passage; none when the
    answer cites nothing."""
    if not answer.citations:
        return []
    numbers = cited_numbers(streamed, len(answer.passages)) + [c.number for c in answer.citations]
    return [source_event(passage) for passage in answer.passages[:max(numbers)]]


def restart_notice(event: Restart) -> str:
    """The text an OpenAI stream gets when a generator fails mid-answer (it cannot take text back)."""
    return f"\n\n[{event.generator} stopped mid-answer ({event.reason}); the answer starts again:]\n\n"


async def _chunks(stream: AnswerStream, model: str, include_usage: bool = False) -> AsyncIterator[str]:
    base: dict[str, Any] = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        event = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    streamed: list[str] = []
    try:
        async for event in stream:
            if isinstance(event, Token):
                streamed.append(event.text)
                yield chunk({"content": event.text})
            elif isinstance(event, Restart):
                yield chunk({"content": restart_notice(event)})
            elif isinstance(event, Answered):
                answer = event.answer
                sources = sources_list(answer)
                if sources:
                    yield chunk({"content": sources})
                for source in source_events(answer, "".join(streamed)):
                    yield chunk({}, event=source.model_dump(exclude_none=True))
                usage = Usage(prompt_tokens=answer.tokens_in, completion_tokens=answer.tokens_out,
                              total_tokens=answer.tokens_in + answer.tokens_out)
                yield chunk({}, "stop", usage=usage.model_dump(),
                            citations=[CitationOut(**c.__dict__).model_dump() for c in answer.citations],
                            generator=answer.generator, answered=answer.answered)
                if include_usage:
                    yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage.model_dump()})}\n\n"
    except AllGeneratorsFailed as exc:  # after the first token: OpenAI's in-stream error shape
        yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'server_error', 'code': 503}})}\n\n"
    yield "data: [DONE]\n\n"


@router.post("/chat/completions", response_model=ChatCompletion, responses={
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or server-sent events with stream: true."},
    404: {"description": "No such model (GET /v1/models lists them)."},
    503: {"description": "No generator on the route could answer."}})
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    pipeline: AnswerPipeline = Depends(get_pipeline),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(caller),
):
    only = route_generators(settings, body.model)
    limits = settings.server.limits
    check_max_tokens(limits, body.max_completion_tokens or body.max_tokens)
    question, history = _conversation(body)
    check_conversation(limits, question, history, messages=len(body.messages))
    where = body.filter.to_search_filter() if body.filter else None
    stream = await AnswerStream.start(request, lambda: pipeline.stream(
        question, principal.groups, None, where, principal.name, history, only))
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(_chunks(stream, body.model, include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return _completion((await stream.answer()).answer, body.model)
