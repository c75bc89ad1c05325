"""A stand-in Anthropic Messages API: a real HTTP server on 127.0.0.1 speaking the wire protocol the
official ``anthropic`` client reads, with the fault knobs of :class:`standins.ollama_server.StandIn`.

Usage::

    with AnthropicStandIn(models=["claude-sonnet-4-5"]) as server:
        client = anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0)
        client.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=[...], stream=True)
        server.chat_requests[-1]["body"]["system"]        # the system prompt, sent apart from the messages

Served: ``GET /v1/models`` (``data``, ``has_more``, ``first_id``, ``last_id``; ``limit`` honoured) and
``POST /v1/messages``. Not streamed: a ``message`` object with ``usage``; ``"stream": true``:
Server-Sent Events ``message_start`` (with ``usage.input_tokens``), ``content_block_start``, one
``content_block_delta`` (``text_delta``) per word, ``content_block_stop``, ``message_delta``
(``stop_reason: end_turn``, ``usage.output_tokens``) and ``message_stop``. Errors are Anthropic's body
``{"type": "error", "error": {"type", "message"}}``: an unknown model 404 ``not_found_error``, a prompt
over ``context_window`` words (or any while ``context_overflow``) 400 "prompt is too long", 429
``rate_limit_error``, 500 ``api_error``, 529 ``overloaded_error``. The answer and token counts are the
Ollama stand-in's (whitespace words; the system prompt counts towards the input).
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .ollama_server import (
    StandInHandler,
    answer_for,
    answer_pieces,
    count_words,
    prompt_words,
)
from .openai_server import OpenAIStandIn

_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 429: "rate_limit_error", 500: "api_error",
                529: "overloaded_error"}


class _Handler(StandInHandler):
    server_version = "AnthropicStandIn"
    MALFORMED = b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {"te\n\n'

    def _send_error(self, status: int, message: str) -> None:
        kind = _ERROR_TYPES.get(status, "api_error")
        self._send_json(status, {"type": "error", "error": {"type": kind, "message": message or kind}},
                        {"request-id": f"req_{uuid.uuid4().hex[:24]}"})

    def _encode(self, payload: Any) -> bytes:
        return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()

    def _record(self, raw: bytes) -> Any:
        headers = {name.lower(): value for name, value in self.headers.items()}
        return self.server.stand_in._record(self.command, self.path, headers, raw)

    def _get(self) -> None:
        stand_in = self.server.stand_in
        self._record(b"")
        url = urlsplit(self.path)
        if url.path != "/v1/models":
            self._send_error(404, f"Not found: {self.path}")
            return
        if not self._before_answering():
            return
        limit = int(parse_qs(url.query).get("limit", ["20"])[0])
        names = list(stand_in.models)
        data = [{"type": "model", "id": name, "display_name": name, "created_at": "2025-09-29T00:00:00Z"}
                for name in names[:limit]]
        self._send_json(200, {"data": data, "has_more": len(names) > limit,
                              "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})

    def _post(self) -> None:
        stand_in = self.server.stand_in
        body = self._record(self._read_raw())
        if self.path != "/v1/messages":
            self._send_error(404, f"Not found: {self.path}")
            return
        if not self._before_answering():
            return
        if not isinstance(body, dict) or "messages" not in body or "max_tokens" not in body:
            self._send_error(400, "messages and max_tokens are required")
            return
        model = body.get("model")
        if model not in stand_in.models:
            self._send_error(404, f"model: {model}")
            return
        system = body.get("system") or ""
        messages = [{"role": "system", "content": system}, *body["messages"]] if system else list(body["messages"])
        words = prompt_words(messages)
        if stand_in.context_overflow or words > stand_in.context_window:
            self._send_error(400, f"prompt is too long: {max(words, stand_in.context_window + 1)} tokens > "
                                  f"{stand_in.context_window} maximum")
            return
        if not self._pause(stand_in.stall_before_first_token):
            return
        answer = answer_for(messages) if stand_in.reply is None else stand_in.reply
        ident = f"msg_{uuid.uuid4().hex[:24]}"
        usage = {"input_tokens": words, "output_tokens": count_words(answer)}
        message = {"id": ident, "type": "message", "role": "assistant", "model": model, "stop_sequence": None}
        if not body.get("stream"):
            self._send_json(200, {**message, "content": [{"type": "text", "text": answer}], "stop_reason": "end_turn",
                                  "usage": usage})
            return
        head = [{"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                        "usage": {"input_tokens": words, "output_tokens": 1}}},
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
        pieces = [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
                  for piece in answer_pieces(answer)]
        tail = [{"type": "content_block_stop", "index": 0},
                {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                 "usage": {"output_tokens": usage["output_tokens"]}},
                {"type": "message_stop"}]
        self._stream("text/event-stream; charset=utf-8", head, pieces, tail)


class AnthropicStandIn(OpenAIStandIn):
    """A stand-in Anthropic server; knobs as :class:`standins.ollama_server.StandIn`, plus
    ``context_overflow`` and ``context_window``; requests recorded as the OpenAI stand-in records them
    (``chat_requests``: the ``POST /v1/messages`` ones; ``received_text()``). ``url`` is the base URL,
    for ``Anthropic(base_url=...)``."""

    handler_class = _Handler
    name = "Anthropic stand-in"
    chat_path = "/v1/messages"

    def __init__(self, models: list[str] | None = None, **knobs: Any) -> None:
        knobs.setdefault("context_window", 200_000)
        super().__init__(list(models if models is not None else ["claude-sonnet-4-5"]), **knobs)

    @property
    def url(self) -> str:
        return f"http://{self.host}"
