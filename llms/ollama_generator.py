"""The local generator: a model served by Ollama, through the official ``ollama`` client."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import httpx
import ollama

from enclave.contracts import Generation, GenerationRequest, GeneratorUnavailable, Locality, Usage
from enclave.llms.generator import collect

DEFAULT_HOST = "127.0.0.1:11434"


class OllamaGenerator:
    """Streamed chat completion on an Ollama server.

    Usage::

        generator = OllamaGenerator("llama3.1:8b")                 # host: $OLLAMA_HOST or 127.0.0.1:11434
        for item in generator.stream(request):                     # text pieces, then one Usage
            ...
        generation = generator.run(GenerationRequest(question, passages, answer_messages(question, passages)))
        generation.text, generation.tokens_in, generation.tokens_out
        generator.reachable(timeout=2.0)     # None, or why not: "cannot connect to Ollama at 127.0.0.1:11434"

    Time limits in seconds: ``connect_timeout`` to connect, ``first_token_timeout`` for the first
    piece and any later gap (Ollama loads a model before its first token: allow for that), ``timeout``
    for the whole answer. A refused connection, a timeout, HTTP 5xx or 429, a model the server does not
    have (404), a malformed stream and one that ends before its ``done`` line raise
    GeneratorUnavailable, so the route tries the next generator; other HTTP errors too, with the
    server's message.
    """

    def __init__(
        self,
        model: str,
        host: str | None = None,
        timeout: float = 120.0,
        name: str = "ollama",
        locality: Locality = Locality.LOCAL,
        options: dict | None = None,
        first_token_timeout: float | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.model = model
        self.host = host or os.environ.get("OLLAMA_HOST") or None
        self.timeout = timeout
        self.first_token_timeout = first_token_timeout or timeout
        self.connect_timeout = connect_timeout
        self.name = name
        self.locality = Locality(locality)
        self.options = {"temperature": 0.0, **(options or {})}
        self._client: ollama.Client | None = None
        self._probe: tuple[float, ollama.Client] | None = None

    @property
    def client(self) -> ollama.Client:
        if self._client is None:
            read = min(self.first_token_timeout, self.timeout)
            # no client-side cap on connections (httpx's default is 100): concurrent answers beyond it would
            # queue here, unseen, instead of at Ollama, which queues beyond its own OLLAMA_NUM_PARALLEL
            self._client = ollama.Client(host=self.host, timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout,
                                                                                  read=read),
                                         limits=httpx.Limits(max_connections=None, max_keepalive_connections=32))
        return self._client

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        """Yield the answer's text as it arrives, then its [Usage][enclave.contracts.Usage]. Raises GeneratorUnavailable
        (see the class docstring), possibly after some pieces were yielded."""
        deadline = time.monotonic() + self.timeout
        done: ollama.ChatResponse | None = None
        try:
            for part in self.client.chat(model=self.model, messages=request.messages, stream=True, options=self.options):
                if part.message and part.message.content:
                    yield part.message.content
                if part.done:
                    done = part
                if time.monotonic() > deadline:
                    raise GeneratorUnavailable(self.name, f"no complete answer within {self.timeout:g} s")
        except ollama.ResponseError as exc:
            if exc.status_code == 404:
                raise GeneratorUnavailable(self.name, f"model {self.model!r} not found on the server") from exc
            raise GeneratorUnavailable(self.name, f"HTTP {exc.status_code}: {exc.error}") from exc
        except httpx.TimeoutException as exc:
            raise GeneratorUnavailable(self.name, f"timed out (connect {self.connect_timeout:g} s, "
                                                  f"first token {self.first_token_timeout:g} s)") from exc
        except (ConnectionError, httpx.ConnectError) as exc:
            raise GeneratorUnavailable(self.name, f"cannot connect to Ollama at {self.host or DEFAULT_HOST}") from exc
        except (httpx.TransportError, json.JSONDecodeError, ValueError) as exc:
            raise GeneratorUnavailable(self.name, f"the stream broke: {type(exc).__name__}: {exc}") from exc
        if done is None:
            raise GeneratorUnavailable(self.name, "the stream ended before the answer was finished")
        yield Usage(int(done.prompt_eval_count or 0), int(done.eval_count or 0))

    def run(self, request: GenerationRequest) -> Generation:
        """The whole answer; raises GeneratorUnavailable (see the class docstring)."""
        return collect(self, request)

    def reachable(self, timeout: float = 2.0) -> str | None:
        """None when the server answers its model list (``GET /api/tags``) within ``timeout`` seconds
        and lists this generator's model (``llama3`` matches ``llama3:latest``); otherwise a short reason,
        e.g. ``"cannot connect to Ollama at 127.0.0.1:11434"``. Never raises; loads no model."""
        try:
            if self._probe is None or self._probe[0] != timeout:
                self._probe = (timeout, ollama.Client(host=self.host, timeout=httpx.Timeout(timeout)))
            listed = self._probe[1].list()
        except ollama.ResponseError as exc:
            return f"HTTP {exc.status_code}: {exc.error}"
        except httpx.TimeoutException:
            return f"no answer within {timeout:g} s"
        except (ConnectionError, httpx.ConnectError):
            return f"cannot connect to Ollama at {self.host or DEFAULT_HOST}"
        except Exception as exc:  # a malformed answer, a transport error: report it, never raise
            return f"{type(exc).__name__}: {exc}"
        names = {m.model for m in listed.models}
        if self.model not in names and f"{self.model}:latest" not in names:
            return f"model {self.model!r} not found on the server"
        return None
