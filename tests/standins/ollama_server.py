"""A stand-in Ollama server: a real HTTP server on 127.0.0.1 that speaks Ollama's wire protocol.

Usage::

    with OllamaStandIn(models=["llama3.1:8b"]) as server:
        client = ollama.Client(host=server.url)
        client.chat(model="llama3.1:8b", messages=[...], stream=False)
        server.requests[-1]["stream"]      # False: every JSON body received is recorded
        server.fail_status = 500           # from now on every request answers HTTP 500 {"error": ...}
        server.stall_seconds = 3.0         # from now on it sleeps 3 s before answering

Served (the parts of the API Enclave and the official ``ollama`` client use):

- ``POST /api/chat``: ``"stream": false`` gives one JSON object; ``"stream": true`` or absent (Ollama's
  default) gives NDJSON (``application/x-ndjson``, chunked), one line per word and a last line with
  ``done: true``, ``done_reason: "stop"`` and the counts.
- ``GET /api/tags``, ``GET /api/version``, ``GET /`` / ``HEAD /`` ("Ollama is running").

The "model" answers from the prompt: the first sentence of passage ``[1]`` of the last user message
(the format of ``prompts/templates/answer_user.j2``) followed by `` [1]``, or :data:`NO_ANSWER` when there
are no passages; to a condense prompt (``prompts/templates/condense_user.j2``) it answers the follow-up
question followed by ``(about: <the last earlier user question>)``. Token counts are whitespace-separated
words: ``prompt_eval_count`` over every message's content, ``eval_count`` over the answer.

A chat with a model not in ``models`` answers HTTP 404 ``{"error": "model \\"x\\" not found, try pulling
it first"}`` as Ollama does. ``stop()`` (or leaving the ``with``) closes the listening socket and every
open connection, and cuts any stall short.

The server plumbing (:class:`StandIn`, the handler base, the streaming faults) is shared with the
OpenAI-compatible stand-in in ``standins.openai_server``; the faults both stand-ins can be told to
produce are listed on :class:`StandIn`.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

NO_ANSWER = "The provided documents do not contain the answer."
VERSION = "0.6.3"

_HEADER = re.compile(r"^\[(\d+)\] .*$", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PIECE = re.compile(r"\s*\S+")


def _now() -> str:
    """Ollama's timestamp format, e.g. ``2024-07-22T20:33:28.123456789Z`` (nanoseconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def first_passage_sentence(prompt: str) -> str | None:
    """The first sentence of passage ``[1]`` in an ``answer_user.j2`` prompt, or None when it has none."""
    headers = list(_HEADER.finditer(prompt))
    first = next((h for h in headers if h.group(1) == "1"), None)
    if first is None:
        return None
    later = [h.start() for h in headers if h.start() > first.end() and h.group(1) != "1"]
    question = prompt.rfind("\n\nQuestion:")
    ends = [p for p in [*later, question] if p > first.end()]
    body = prompt[first.end(): min(ends) if ends else len(prompt)]
    lines = [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    text = " ".join(" ".join(lines).split())
    if not text:
        return None
    return _SENTENCE_END.split(text, maxsplit=1)[0]


_FOLLOW_UP = re.compile(r"^Follow-up question: (.+)$", re.MULTILINE)
_EARLIER_QUESTION = re.compile(r"^user: (.+)$", re.MULTILINE)


def condensed_for(prompt: str) -> str | None:
    """The stand-in's standalone question for a ``condense_user.j2`` prompt: the follow-up question,
    then "about" the last earlier user question; None when ``prompt`` is not a condense prompt."""
    follow_up = _FOLLOW_UP.search(prompt)
    if follow_up is None:
        return None
    earlier = _EARLIER_QUESTION.findall(prompt[:follow_up.start()])
    return f"{follow_up.group(1).strip()} (about: {earlier[-1].strip()})" if earlier else follow_up.group(1).strip()


def answer_for(messages: list[dict[str, Any]]) -> str:
    """What the stand-in model answers to ``messages`` (see the module docstring)."""
    user = [m for m in messages if m.get("role") == "user"]
    condensed = condensed_for(str(user[-1].get("content") or "")) if user else None
    if condensed is not None:
        return condensed
    sentence = first_passage_sentence(str(user[-1].get("content") or "")) if user else None
    return f"{sentence} [1]" if sentence else NO_ANSWER


def count_words(text: str) -> int:
    return len(text.split())


def prompt_words(messages: Iterable[dict[str, Any]]) -> int:
    """The stand-ins' prompt token count: whitespace-separated words over every message's content."""
    return sum(count_words(str(m.get("content") or "")) for m in messages)


def answer_pieces(answer: str) -> list[str]:
    """The streamed tokens of ``answer``: one word each, with the whitespace before it."""
    return _PIECE.findall(answer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, stand_in: StandIn, port: int = 0) -> None:
        self.stand_in = stand_in
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), stand_in.handler_class)

    def process_request(self, request, client_address):  # type: ignore[override]
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # type: ignore[override]
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            open_connections = list(self.connections)
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class StandInHandler(BaseHTTPRequestHandler):
    """What every stand-in's request handler shares: JSON and text answers, the forced failure and the
    stalls, and chunked streaming with the stream faults. A subclass gives ``_get``, ``_post``,
    ``_send_error`` (its API's error body), ``_encode`` (one stream event as bytes) and
    ``MALFORMED`` (the broken event a ``malformed_stream`` sends)."""

    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, as Ollama (Go net/http) does
    timeout = 30  # an idle keep-alive connection is closed after this long
    server: _Server
    MALFORMED = b"{not json\n"

    def log_message(self, format: str, *args: Any) -> None:  # silence the access log
        pass

    # -- plumbing ---------------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_body(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers)

    def _send_text(self, status: int, text: str) -> None:
        self._send_body(status, text.encode(), "text/plain; charset=utf-8")

    def _send_body(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_raw(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_error(self, status: int, message: str) -> None:
        raise NotImplementedError

    def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds``; False (and the connection to be dropped) when ``stop()`` cut the sleep short."""
        if seconds > 0 and self.server.stand_in._stopping.wait(seconds):
            self.close_connection = True  # stopped while stalling: drop the connection, as a killed server would
            return False
        return True

    def _before_answering(self) -> bool:
        """Apply the stall and the forced failure; False when the response has already been sent."""
        stand_in = self.server.stand_in
        if not self._pause(stand_in.stall_seconds):
            return False
        if stand_in.fail_status:
            self._send_error(int(stand_in.fail_status), stand_in.fail_message)
            return False
        return True

    def _guard(self, handler) -> None:
        try:
            handler()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client gave up (e.g. its timeout): nothing to answer

    # -- streaming --------------------------------------------------------------------------------

    def _encode(self, payload: Any) -> bytes:
        raise NotImplementedError

    def _stream(self, content_type: str, head: list[Any], pieces: list[Any], tail: list[Any],
                headers: dict[str, str] | None = None) -> None:
        """One chunked 200 response: the ``head`` events, one event per token (``pieces``), then the
        ``tail`` events, with the stream faults of :class:`StandIn` applied."""
        stand_in = self.server.stand_in
        cut = stand_in.cut_stream_after
        broken_at = len(pieces) // 2 if stand_in.malformed_stream else -1
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        if not self._pause(stand_in.stall_after_headers):
            return
        for event in head:
            self._chunk(self._encode(event))
        for number, piece in enumerate(pieces if cut is None else pieces[:cut]):
            if number == broken_at:
                self._chunk(self.MALFORMED)
            self._chunk(self._encode(piece))
            if number == 0 and not self._pause(stand_in.stall_after_first_token):
                return
            if not self._pause(stand_in.token_seconds):
                return
        if cut is not None and not stand_in.cut_stream_cleanly:
            self.close_connection = True  # no last chunk: the client reads a body cut short
            return
        for event in tail if cut is None else []:  # a clean cut ends the body without the tail
            self._chunk(self._encode(event))
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # -- routes -----------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._guard(self._get)

    def do_GET(self) -> None:
        self._guard(self._get)

    def do_POST(self) -> None:
        self._guard(self._post)

    def _get(self) -> None:
        raise NotImplementedError

    def _post(self) -> None:
        raise NotImplementedError


class _Handler(StandInHandler):
    server_version = "OllamaStandIn"
    MALFORMED = b'{"model": "llama3.1:8b", "message": {"role": "assistant", "content": "\n'  # a line cut short

    def _send_error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": message or f"stand-in failure (HTTP {status})"})

    def _encode(self, payload: Any) -> bytes:
        return json.dumps(payload).encode() + b"\n"

    def _get(self) -> None:
        stand_in = self.server.stand_in
        stand_in._record(self.command, self.path, None)
        if self.path == "/":
            self._send_text(200, "Ollama is running")
            return
        if self.path not in ("/api/tags", "/api/version"):
            self._send_text(404, "404 page not found")
            return
        if not self._before_answering():
            return
        if self.path == "/api/version":
            self._send_json(200, {"version": VERSION})
        else:
            self._send_json(200, {"models": [_model_entry(name) for name in list(stand_in.models)]})

    def _post(self) -> None:
        stand_in = self.server.stand_in
        try:
            raw = self._read_raw()
            body = json.loads(raw) if raw else {}
        except (ValueError, UnicodeDecodeError):
            stand_in._record(self.command, self.path, None)
            self._send_json(400, {"error": "invalid character in request body"})
            return
        stand_in._record(self.command, self.path, body)
        if self.path != "/api/chat":
            self._send_text(404, "404 page not found")
            return
        if not self._before_answering():
            return
        model = body.get("model") or ""
        if not model:
            self._send_json(400, {"error": "model is required"})
            return
        if model not in stand_in.models:
            self._send_json(404, {"error": f'model "{model}" not found, try pulling it first'})
            return
        if not self._pause(stand_in.stall_before_first_token):
            return
        messages = body.get("messages") or []
        answer = answer_for(messages) if stand_in.reply is None else stand_in.reply
        words = prompt_words(messages)
        counts = {
            "total_duration": 1_000_000 * (1 + words + count_words(answer)),
            "load_duration": 1_000_000,
            "prompt_eval_count": words,
            "prompt_eval_duration": 1_000_000 * max(words, 1),
            "eval_count": count_words(answer),
            "eval_duration": 1_000_000 * max(count_words(answer), 1),
        }
        if body.get("stream", True):
            self._stream_chat(model, answer, counts)
        else:
            self._send_json(200, {
                "model": model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": answer},
                "done_reason": "stop",
                "done": True,
                **counts,
            })

    def _stream_chat(self, model: str, answer: str, counts: dict[str, int]) -> None:
        def line(content: str, **extra: Any) -> dict[str, Any]:
            return {"model": model, "created_at": _now(), "message": {"role": "assistant", "content": content},
                    **extra}

        pieces = [line(piece, done=False) for piece in answer_pieces(answer)]
        self._stream("application/x-ndjson", [], pieces, [line("", done_reason="stop", done=True, **counts)])


def _model_entry(name: str) -> dict[str, Any]:
    family = name.split(":")[0].rstrip("0123456789.") or name
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-01-01T00:00:00.000000000Z",
        "size": 4_920_753_328,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "8.0B",
            "quantization_level": "Q4_K_M",
        },
    }


class StandIn:
    """A stand-in server on 127.0.0.1 (ephemeral port), served from a background thread.

    Attributes a test may change at any time, read afresh by every request:

    - ``models``: the model names served; any other answers the API's "model not found" (HTTP 404).
    - ``fail_status``: 0, or an HTTP status every API request then answers with the API's error body
      (``fail_message``, or the API's usual message for that status).
    - ``stall_seconds``: sleep before answering any API request (headers not sent yet).
    - ``stall_before_first_token``: sleep before answering a chat request that is valid (the model
      exists), headers not sent yet: what a loading or overloaded model looks like.
    - ``stall_after_headers``: a streamed chat sends its 200 headers, then sleeps before any event (as
      servers that send headers at once, e.g. FastAPI's ``StreamingResponse``, do).
    - ``stall_after_first_token``: a streamed chat sends its first token, then sleeps mid-stream.
    - ``token_seconds``: sleep between streamed tokens.
    - ``malformed_stream``: a streamed chat sends an event that is not JSON halfway through its tokens.
    - ``cut_stream_after``: None, or N: a streamed chat sends N tokens, then closes the connection
      without the chunked body's end, the last event or the end marker (a proxy or server dying).
    - ``cut_stream_cleanly``: with ``cut_stream_after``, end the chunked body properly instead: the
      stream just stops early, without its last event (the client sees no error, only no "done").
    - ``refuse_connections``: stop listening (connections are refused, open ones are dropped); set
      it back to False to listen again on the same port.
    - ``reply``: None, or a fixed answer (e.g. ``""``) used instead of the one built from the prompt.

    ``stall_*`` and ``token_seconds`` sleeps are cut short by ``stop()``. ``calls`` holds every
    ``(method, path)`` received, in order.
    """

    handler_class: type[StandInHandler] = StandInHandler
    name = "stand-in"

    def __init__(
        self,
        models: list[str],
        *,
        fail_status: int = 0,
        fail_message: str = "",
        stall_seconds: float = 0.0,
        token_seconds: float = 0.0,
        reply: str | None = None,
        stall_before_first_token: float = 0.0,
        stall_after_headers: float = 0.0,
        stall_after_first_token: float = 0.0,
        malformed_stream: bool = False,
        cut_stream_after: int | None = None,
        cut_stream_cleanly: bool = False,
        refuse_connections: bool = False,
    ) -> None:
        self.models: list[str] = list(models)
        self.fail_status = fail_status
        self.fail_message = fail_message
        self.stall_seconds = stall_seconds
        self.token_seconds = token_seconds
        self.reply = reply
        self.stall_before_first_token = stall_before_first_token
        self.stall_after_headers = stall_after_headers
        self.stall_after_first_token = stall_after_first_token
        self.malformed_stream = malformed_stream
        self.cut_stream_after = cut_stream_after
        self.cut_stream_cleanly = cut_stream_cleanly
        self.calls: list[tuple[str, str]] = []
        self._refusing = bool(refuse_connections)
        self._lock = threading.Lock()
        self._lifecycle = threading.RLock()
        self._stopping = threading.Event()
        self._port: int | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Self:
        with self._lifecycle:
            if self._port is None:
                self._stopping.clear()
                self._listen(0)
                if self._refusing:
                    self._close_listener()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection; idempotent."""
        with self._lifecycle:
            self._stopping.set()
            self._close_listener()
            self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def refuse_connections(self) -> bool:
        return self._refusing

    @refuse_connections.setter
    def refuse_connections(self, value: bool) -> None:
        with self._lifecycle:
            self._refusing = bool(value)
            if self._port is None:
                return  # not started: start() honours it
            if self._refusing:
                self._close_listener()
            elif self._server is None:
                self._listen(self._port)

    def _listen(self, port: int) -> None:
        self._server = _Server(self, port)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        )
        self._thread.start()

    def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- addresses --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"the {self.name} is not running")
        return self._port

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}"


class OllamaStandIn(StandIn):
    """A stand-in Ollama server; the knobs are those of :class:`StandIn`. ``requests`` holds the JSON
    body of every POST received, in order; ``calls`` every ``(method, path)``. ``url`` is the form
    ``ollama.Client(host=...)`` takes, ``host`` the form ``OLLAMA_HOST`` usually takes.
    """

    handler_class = _Handler
    name = "Ollama stand-in"

    def __init__(
        self,
        models: list[str] | None = None,
        fail_status: int = 0,
        fail_message: str = "",
        stall_seconds: float = 0.0,
        token_seconds: float = 0.0,
        reply: str | None = None,
        **faults: Any,
    ) -> None:
        super().__init__(
            list(models if models is not None else ["llama3.1:8b"]), fail_status=fail_status,
            fail_message=fail_message, stall_seconds=stall_seconds, token_seconds=token_seconds, reply=reply,
            **faults,
        )
        self.requests: list[dict[str, Any]] = []

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """The bodies of the ``POST /api/chat`` requests received, in order."""
        with self._lock:
            return [body for (method, path), body in zip(self._post_calls(), self.requests) if path == "/api/chat"]

    def _post_calls(self) -> list[tuple[str, str]]:
        return [call for call in self.calls if call[0] == "POST"]

    def _record(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.calls.append((method, path))
            if method == "POST":
                self.requests.append(body if isinstance(body, dict) else {})
