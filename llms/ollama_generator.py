"""The local generator: a model served by Ollama, through the official ``ollama`` client."""

from __future__ import annotations

import os
from typing import Literal

import httpx
import ollama

from llms.generator import Generation, GenerationRequest, GeneratorUnavailable


class OllamaGenerator:
    """Chat completion on an Ollama server.

    Usage::

        generator = OllamaGenerator("llama3.1:8b")                 # host: $OLLAMA_HOST or 127.0.0.1:11434
        generation = generator.run(GenerationRequest(question, passages, answer_messages(question, passages)))
        generation.text, generation.tokens_in, generation.tokens_out

    ``timeout`` is in seconds, applied by httpx to connecting and to each read; Ollama sends nothing
    until it has finished a non-streamed answer, so it bounds the whole generation. A refused connection, a timeout, HTTP 5xx or 429,
    and a model the server does not have (404) raise GeneratorUnavailable, so a chain tries the next
    generator; other HTTP errors too, with the server's message.
    """

    def __init__(
        self,
        model: str,
        host: str | None = None,
        timeout: float = 120.0,
        name: str = "ollama",
        locality: Literal["local", "external"] = "local",
        options: dict | None = None,
    ) -> None:
        self.model = model
        self.host = host or os.environ.get("OLLAMA_HOST") or None
        self.timeout = timeout
        self.name = name
        self.locality = locality
        self.options = {"temperature": 0.0, **(options or {})}
        self._client: ollama.Client | None = None

    @property
    def client(self) -> ollama.Client:
        if self._client is None:
            self._client = ollama.Client(host=self.host, timeout=self.timeout)
        return self._client

    def run(self, request: GenerationRequest) -> Generation:
        """Answer ``request`` with the model; raises GeneratorUnavailable (see the class docstring)."""
        try:
            response = self.client.chat(model=self.model, messages=request.messages, stream=False, options=self.options)
        except ollama.ResponseError as exc:
            if exc.status_code == 404:
                raise GeneratorUnavailable(self.name, f"model {self.model!r} not found on the server") from exc
            raise GeneratorUnavailable(self.name, f"HTTP {exc.status_code}: {exc.error}") from exc
        except httpx.TimeoutException as exc:
            raise GeneratorUnavailable(self.name, f"timed out after {self.timeout:g} s") from exc
        except (ConnectionError, httpx.TransportError) as exc:
            raise GeneratorUnavailable(self.name, f"cannot connect to Ollama at {self.host or '127.0.0.1:11434'}") from exc
        text = (response.message.content or "").strip()
        if not text:
            raise GeneratorUnavailable(self.name, "the model returned an empty answer")
        return Generation(
            text=text,
            generator=self.name,
            model=self.model,
            locality=self.locality,
            tokens_in=int(response.prompt_eval_count or 0),
            tokens_out=int(response.eval_count or 0),
        )
