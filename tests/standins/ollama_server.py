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
are no passages. Token counts are whitespace-separated words: ``prompt_eval_count`` over every
message's content, ``eval_count`` over the answer.

A chat with a model not in ``models`` answers HTTP 404 ``{"error": "model \\"x\\" not found, try pulling
it first"}`` as Ollama does. ``stop()`` (or leaving the ``with``) closes the listening socket and every
open connection, and cuts any stall short.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NO_ANSWER = "The provided documents do not contain the answer."
VERSION = "0.6.3"

_HEADER = re.compile(r"^\[(\d+)\] .*$", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PIECE = re.compile(r"\s*\S+")


def _now() -> str:
    """Ollama's timestamp format, e.g. ``2024-07-22T20:33:28.123456789Z`` (nanoseconds, UTC)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


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


def answer_for(messages: list[dict[str, Any]]) -> str:
    """What the stand-in model answers to ``messages`` (see the module docstring)."""
    user = [m for m in messages if m.get("role") == "user"]
    sentence = first_passage_sentence(str(user[-1].get("content") or "")) if user else None
    return f"{sentence} [1]" if sentence else NO_ANSWER


def count_words(text: str) -> int:
    return len(text.split())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, stand_in: OllamaStandIn) -> None:
        self.stand_in = stand_in
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, as Ollama (Go net/http) does
    server_version = "OllamaStandIn"
    timeout = 30  # an idle keep-alive connection is closed after this long
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the access log
        pass

    # -- plumbing ---------------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_text(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        return json.loads(raw)

    def _before_answering(self) -> bool:
        """Apply the stall and the forced failure; False when the response has already been sent."""
        stand_in = self.server.stand_in
        if stand_in.stall_seconds > 0 and stand_in._stopping.wait(stand_in.stall_seconds):
            self.close_connection = True
            return False  # stopped while stalling: drop the connection, as a killed server would
        if stand_in.fail_status:
            status = int(stand_in.fail_status)
            self._send_json(status, {"error": stand_in.fail_message or f"stand-in failure (HTTP {status})"})
            return False
        return True

    def _guard(self, handler) -> None:
        try:
            handler()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client gave up (e.g. its timeout): nothing to answer

    # -- routes -----------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._guard(self._get)

    def do_GET(self) -> None:
        self._guard(self._get)

    def do_POST(self) -> None:
        self._guard(self._post)

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
            body = self._read_body()
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
        messages = body.get("messages") or []
        answer = answer_for(messages) if stand_in.reply is None else stand_in.reply
        prompt_words = sum(count_words(str(m.get("content") or "")) for m in messages)
        counts = {
            "total_duration": 1_000_000 * (1 + prompt_words + count_words(answer)),
            "load_duration": 1_000_000,
            "prompt_eval_count": prompt_words,
            "prompt_eval_duration": 1_000_000 * max(prompt_words, 1),
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
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        delay = self.server.stand_in.token_seconds
        for piece in _PIECE.findall(answer):
            self._chunk({"model": model, "created_at": _now(),
                         "message": {"role": "assistant", "content": piece}, "done": False})
            if delay > 0 and self.server.stand_in._stopping.wait(delay):
                self.close_connection = True
                return
        self._chunk({"model": model, "created_at": _now(), "message": {"role": "assistant", "content": ""},
                     "done_reason": "stop", "done": True, **counts})
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, payload: dict[str, Any]) -> None:
        line = json.dumps(payload).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))


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


class OllamaStandIn:
    """A stand-in Ollama server on 127.0.0.1 (ephemeral port), served from a background thread.

    Attributes a test may change while it runs: ``models`` (names served), ``fail_status`` (0, or an
    HTTP status every API request then answers with ``{"error": fail_message}``), ``stall_seconds``
    (sleep before answering), ``token_seconds`` (sleep between streamed lines), ``reply`` (None, or a
    fixed answer, e.g. ``""``, used instead of the one built from the prompt). ``requests`` holds the
    JSON body of every POST received, in order; ``calls`` every ``(method, path)``.
    """

    def __init__(
        self,
        models: list[str] | None = None,
        fail_status: int = 0,
        fail_message: str = "",
        stall_seconds: float = 0.0,
        token_seconds: float = 0.0,
        reply: str | None = None,
    ) -> None:
        self.models: list[str] = list(models if models is not None else ["llama3.1:8b"])
        self.fail_status = fail_status
        self.fail_message = fail_message
        self.stall_seconds = stall_seconds
        self.token_seconds = token_seconds
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> OllamaStandIn:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="ollama-stand-in", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OllamaStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the Ollama stand-in is not running")
        return self._server.server_address[1]

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the form ``OLLAMA_HOST`` usually takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, for ``ollama.Client(host=...)``."""
        return f"http://{self.host}"

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
