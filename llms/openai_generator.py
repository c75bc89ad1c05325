"""A generator on any OpenAI-compatible chat API (OpenAI, Azure OpenAI, vLLM, LiteLLM...), through the
official ``openai`` client, streamed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai

from enclave.contracts import GenerationRequest, GeneratorUnavailable, Usage
from enclave.llms.api_generator import ApiGenerator


class OpenAIGenerator(ApiGenerator):
    """Streamed chat completion on an OpenAI-compatible server.

    Usage::

        generator = OpenAIGenerator("gpt-4o-mini", base_url="https://api.openai.com/v1", api_key=key)
        for item in generator.stream(request):       # text deltas as they arrive, then one Usage
            print(item if isinstance(item, str) else f"\n{item.tokens_in} in, {item.tokens_out} out")
        generation = generator.run(request)           # the whole answer as a Generation
        generator.reachable(timeout=2.0)              # None, or why not: "cannot connect to https://..."

    Time limits, in seconds: ``connect_timeout`` to connect, ``first_token_timeout`` for the first
    piece (and for any later gap between pieces), ``timeout`` for the whole answer. Each of these, a
    refused connection, HTTP 5xx or 429, a model the server does not have (404), a context longer
    than the model takes (400 ``context_length_exceeded``), a malformed stream and a stream that ends
    before its ``finish_reason`` raise GeneratorUnavailable, so the route tries the next generator.
    The client never retries on its own (``max_retries=0``): the route decides what happens next.
    """

    default_name = "openai"

    def _make_client(self, read_timeout: float) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.base_url, api_key=self.api_key or "unused", max_retries=0,
            timeout=openai.Timeout(self.timeout, connect=self.connect_timeout, read=read_timeout),
        )

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        """Yield the answer's text as it arrives, then its [Usage][enclave.contracts.Usage] once the stream has finished.
        Raises GeneratorUnavailable (see the class docstring), possibly after some pieces were yielded."""
        deadline = time.monotonic() + self.timeout
        usage = Usage()
        finished = streamed = False
        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=request.messages, stream=True, temperature=0.0,
                stream_options={"include_usage": True},
                **({"max_tokens": self.max_tokens} if self.max_tokens else {}),
            )
            with response:
                for chunk in response:
                    if chunk.usage is not None:
                        usage = Usage(int(chunk.usage.prompt_tokens or 0), int(chunk.usage.completion_tokens or 0))
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            streamed = True
                            yield choice.delta.content
                        if choice.finish_reason:
                            finished = True
                    if time.monotonic() > deadline:
                        raise GeneratorUnavailable(self.name, f"no complete answer within {self.timeout:g} s")
        except openai.APITimeoutError as exc:
            raise GeneratorUnavailable(self.name, f"timed out (connect {self.connect_timeout:g} s, "
                                                  f"first token {self.first_token_timeout:g} s)") from exc
        except openai.APIConnectionError as exc:
            if streamed:  # the client reports a connection lost mid-stream as a connection error
                raise GeneratorUnavailable(self.name, f"the stream broke: connection lost ({exc.__cause__ or exc})") from exc
            raise GeneratorUnavailable(self.name, f"cannot connect to {self.client.base_url}") from exc
        except openai.NotFoundError as exc:
            raise GeneratorUnavailable(self.name, f"model {self.model!r} not found on the server") from exc
        except openai.BadRequestError as exc:
            if exc.code == "context_length_exceeded" or "context length" in str(exc.message).lower():
                raise GeneratorUnavailable(self.name, "the prompt is longer than the model's context") from exc
            raise GeneratorUnavailable(self.name, f"HTTP 400: {exc.message}") from exc
        except openai.APIStatusError as exc:
            raise GeneratorUnavailable(self.name, f"HTTP {exc.status_code}: {exc.message}") from exc
        except (openai.APIError, ValueError) as exc:  # a malformed event: json.JSONDecodeError
            raise GeneratorUnavailable(self.name, f"the stream broke: {type(exc).__name__}: {exc}") from exc
        if not finished:
            raise GeneratorUnavailable(self.name, "the stream ended before the answer was finished")
        yield usage

    def reachable(self, timeout: float = 2.0) -> str | None:
        """None when the server answers its model list (``GET /models``) within ``timeout`` seconds;
        otherwise a short reason (``"cannot connect to ..."``, ``"HTTP 401: ..."``). Never raises."""
        try:
            self.client.models.list(timeout=timeout)
        except openai.APITimeoutError:
            return f"no answer within {timeout:g} s"
        except openai.APIConnectionError:
            return f"cannot connect to {self.client.base_url}"
        except openai.APIStatusError as exc:
            return f"HTTP {exc.status_code}: {str(exc.message).removeprefix(f'Error code: {exc.status_code} - ')}"
        except Exception as exc:  # a malformed answer: report it, never raise
            return f"{type(exc).__name__}: {exc}"
        return None
