"""A stand-in OpenAI-compatible server: a real HTTP server on 127.0.0.1 that speaks the Chat Completions
wire protocol, as the official ``openai`` client reads it.

Usage::

    with OpenAIStandIn(models=["gpt-4o-mini"]) as server:
        client = openai.OpenAI(base_url=server.url, api_key="test", max_retries=0, timeout=5)
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        server.requests[-1]["headers"]["authorization"]   # "Bearer test"
        server.context_overflow = True                     # from now on chats answer 400 context_length_exceeded

Served:

- ``POST /v1/chat/completions``: a ``chat.completion`` object with ``usage``; with ``"stream": true``
  Server-Sent Events (``text/event-stream``, chunked): a first ``chat.completion.chunk`` with the
  assistant role, one chunk per word, a chunk with ``finish_reason: "stop"``, with
  ``stream_options.include_usage`` a usage chunk with empty ``choices`` (every other chunk then has
  ``"usage": null``), and ``data: [DONE]``.
- ``GET /v1/models`` and ``GET /v1/models/{id}``.

The answer and the token counts are the Ollama stand-in's (:func:`standins.ollama_server.answer_for`,
whitespace-separated words). Errors are OpenAI's body ``{"error": {"message", "type", "param",
"code"}}`` with OpenAI's messages: an unknown model is 404 ``model_not_found``, a prompt over
``context_window`` words (or any prompt while ``context_overflow`` is set) 400
``context_length_exceeded``, ``fail_status`` 429 ``rate_limit_exceeded`` with a ``retry-after`` header
(``retry_after`` seconds; None leaves it out), 500 and 503 ``server_error``. Every response carries an
``x-request-id``. The other faults (stalls, broken and cut streams, refused connections) are those of
:class:`standins.ollama_server.StandIn`.

``requests`` records every request as ``{"method", "path", "headers", "body", "raw"}``: header names
lower-cased, ``body`` the decoded JSON (None when there is none or it is not JSON) and ``raw`` the body
text exactly as received. JSON escapes non-ASCII characters and quotes, so a test searching for leaked
text should search the strings of ``body`` as well as ``raw``: :meth:`OpenAIStandIn.received_text`
gives both for every request.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from .ollama_server import (
    StandIn,
    StandInHandler,
    answer_for,
    answer_pieces,
    count_words,
    prompt_words,
)

DONE = "[DONE]"
FINGERPRINT = "fp_stand_in"
_ERRORS = {  # OpenAI's own messages, types and codes for the statuses a test forces
    429: (
        "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 1s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
}


def plain_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """``messages`` with every content as text (the text parts of a list content, joined by lines)."""
    plain = []
    for message in messages:
        message = message if isinstance(message, dict) else {}
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
        plain.append({**message, "content": content or ""})
    return plain


class _Handler(StandInHandler):
    server_version = "OpenAIStandIn"
    MALFORMED = b'data: {"id": "chatcmpl-cut", "object": "chat.completion.chunk", "choices": [{"delta": {"conte\n\n'

    def end_headers(self) -> None:
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        super().end_headers()

    def _send_error(self, status: int, message: str, *, kind: str = "", param: str | None = None,
                    code: str | None = None) -> None:
        known_message, known_kind, known_code = _ERRORS.get(status, ("", "", None))
        stand_in = self.server.stand_in
        headers = {"retry-after": f"{stand_in.retry_after:g}"} if status == 429 and stand_in.retry_after else {}
        self._send_json(status, {"error": {
            "message": message or known_message or f"stand-in failure (HTTP {status})",
            "type": kind or known_kind or ("server_error" if status >= 500 else "invalid_request_error"),
            "param": param,
            "code": code or known_code,
        }}, headers)

    def _encode(self, payload: Any) -> bytes:
        return b"data: " + (payload if isinstance(payload, str) else json.dumps(payload)).encode() + b"\n\n"

    def _path(self) -> str:
        return urlsplit(self.path).path

    def _record(self, raw: bytes) -> Any:
        headers = {name.lower(): value for name, value in self.headers.items()}
        return self.server.stand_in._record(self.command, self.path, headers, raw)

    def _invalid_url(self) -> None:
        self._send_error(404, f"Invalid URL ({self.command} {self._path()})")

    def _get(self) -> None:
        stand_in = self.server.stand_in
        self._record(b"")
        path = self._path()
        if path != "/v1/models" and not path.startswith("/v1/models/"):
            self._invalid_url()
            return
        if not self._before_answering():
            return
        if path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [_model_entry(name) for name in list(stand_in.models)]})
        elif (name := path.removeprefix("/v1/models/")) in stand_in.models:
            self._send_json(200, _model_entry(name))
        else:
            self._send_error(404, f"The model '{name}' does not exist", code="model_not_found")

    def _post(self) -> None:
        stand_in = self.server.stand_in
        body = self._record(self._read_raw())
        if self._path() != "/v1/chat/completions":
            self._invalid_url()
            return
        if not self._before_answering():
            return
        if not isinstance(body, dict):
            self._send_error(400, "We could not parse the JSON body of your request. (HINT: This likely means you "
                                  "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                                  "but what was sent was not valid JSON.)")
            return
        model = body.get("model")
        if not model:
            self._send_error(400, "you must provide a model parameter")
            return
        if "messages" not in body:
            self._send_error(400, "Missing required parameter: 'messages'.", param="messages",
                             code="missing_required_parameter")
            return
        if model not in stand_in.models:
            self._send_error(404, f"The model `{model}` does not exist or you do not have access to it.",
                             code="model_not_found")
            return
        messages = plain_messages(list(body.get("messages") or []))
        words = prompt_words(messages)
        window = stand_in.context_window
        if stand_in.context_overflow or words > window:
            self._send_error(400, f"This model's maximum context length is {window} tokens. However, your messages "
                                  f"resulted in {max(words, window + 1)} tokens. Please reduce the length of the "
                                  "messages.", param="messages", code="context_length_exceeded")
            return
        if not self._pause(stand_in.stall_before_first_token):
            return
        answer = answer_for(messages) if stand_in.reply is None else stand_in.reply
        usage = {
            "prompt_tokens": words,
            "completion_tokens": count_words(answer),
            "total_tokens": words + count_words(answer),
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream_completion(ident, created, model, answer, usage if include_usage else None)
            return
        self._send_json(200, {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": answer, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        })

    def _stream_completion(self, ident: str, created: int, model: str, answer: str,
                           usage: dict[str, Any] | None) -> None:
        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {
                "id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "service_tier": "default", "system_fingerprint": FINGERPRINT,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
                **({} if usage is None else {"usage": None}),
            }

        head = [chunk({"role": "assistant", "content": "", "refusal": None})]
        pieces = [chunk({"content": piece}) for piece in answer_pieces(answer)]
        tail: list[Any] = [chunk({}, "stop")]
        if usage is not None:
            tail.append({**chunk({}), "choices": [], "usage": usage})
        self._stream("text/event-stream; charset=utf-8", head, pieces, [*tail, DONE])


def _strings(value: Any) -> list[str]:
    """Every string in a decoded JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in [key, *_strings(item)]]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1_715_367_049, "owned_by": "system"}


class OpenAIStandIn(StandIn):
    """A stand-in OpenAI-compatible server; the knobs are those of
    :class:`standins.ollama_server.StandIn` and ``context_overflow``, ``context_window`` and
    ``retry_after`` (see the module docstring). ``url`` ends in ``/v1``, as ``OpenAI(base_url=...)``
    wants; ``requests`` records every request, ``calls`` every ``(method, path)``.
    """

    handler_class = _Handler
    name = "OpenAI stand-in"
    chat_path = "/v1/chat/completions"  # the requests ``chat_requests`` lists

    def __init__(
        self,
        models: list[str] | None = None,
        *,
        context_overflow: bool = False,
        context_window: int = 128_000,
        retry_after: float | None = 1,
        **knobs: Any,
    ) -> None:
        super().__init__(list(models if models is not None else ["gpt-4o-mini"]), **knobs)
        self.context_overflow = context_overflow
        self.context_window = context_window
        self.retry_after = retry_after
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, for ``openai.OpenAI(base_url=...)``."""
        return f"http://{self.host}/v1"

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """The records of the ``POST /v1/chat/completions`` requests received, in order."""
        with self._lock:
            return [r for r in self.requests if r["method"] == "POST" and r["path"] == self.chat_path]

    def received_text(self) -> str:
        """Every request body received, raw, then every string in it decoded (JSON escapes undone), one
        per line: where a test looks for text that must not have left."""
        with self._lock:
            records = list(self.requests)
        return "\n".join([*(r["raw"] for r in records), *(s for r in records for s in _strings(r["body"]))])

    def _record(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Any:
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        with self._lock:
            self.calls.append((method, path))
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body, "raw": text})
        return body
