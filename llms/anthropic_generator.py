"""A generator on Anthropic's Messages API, through the official ``anthropic`` client, streamed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic

try:  # the anthropic client reads its stream through httpx2 (older releases: httpx) and lets its errors through
    import httpx2 as _http
except ImportError:  # pragma: no cover - depends on the installed anthropic
    import httpx as _http

from enclave.contracts import GenerationRequest, GeneratorUnavailable, Usage
from enclave.llms.api_generator import ApiGenerator


class AnthropicGenerator(ApiGenerator):
    """Streamed answers from a Claude model.

    Usage::

        generator = AnthropicGenerator("claude-sonnet-4-5", api_key=key)
        for item in generator.stream(request):       # text deltas as they arrive, then one Usage
            ...
        generation = generator.run(request)
        generator.reachable(timeout=2.0)             # None, or why not: "cannot connect to https://..."

    The request's system message goes to the API's ``system`` field, the rest as ``messages``.
    Time limits in seconds as for [OpenAIGenerator][enclave.llms.OpenAIGenerator]. A refused
    connection, a timeout, HTTP 5xx/529 (overloaded) or 429, an unknown model (404), a prompt too long
    for the model (400), and a stream that breaks or ends before ``message_stop`` raise
    GeneratorUnavailable. The client never retries on its own.
    """

    default_name = "anthropic"

    def _make_client(self, read_timeout: float) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=self.base_url, api_key=self.api_key or "unused", max_retries=0,
            timeout=anthropic.Timeout(self.timeout, connect=self.connect_timeout, read=read_timeout),
        )

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        """Yield the answer's text as it arrives, then its [Usage][enclave.contracts.Usage]. Raises GeneratorUnavailable."""
        system = "\n\n".join(m["content"] for m in request.messages if m["role"] == "system")
        messages = [m for m in request.messages if m["role"] != "system"]
        deadline = time.monotonic() + self.timeout
        tokens_in = tokens_out = 0
        stopped = False
        try:
            events = self.client.messages.create(
                model=self.model, max_tokens=self.max_tokens or 1024, messages=messages, stream=True,
                **({"system": system} if system else {}),
            )
            with events:
                for event in events:
                    if event.type == "message_start":
                        tokens_in = int(event.message.usage.input_tokens or 0)
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield event.delta.text
                    elif event.type == "message_delta":
                        tokens_out = int(event.usage.output_tokens or 0)
                    elif event.type == "message_stop":
                        stopped = True
                    if time.monotonic() > deadline:
                        raise GeneratorUnavailable(self.name, f"no complete answer within {self.timeout:g} s")
        except (anthropic.APITimeoutError, _http.TimeoutException) as exc:
            raise GeneratorUnavailable(self.name, f"timed out (connect {self.connect_timeout:g} s, "
                                                  f"first token {self.first_token_timeout:g} s)") from exc
        except anthropic.APIConnectionError as exc:
            raise GeneratorUnavailable(self.name, f"cannot connect to {self.client.base_url}") from exc
        except anthropic.NotFoundError as exc:
            raise GeneratorUnavailable(self.name, f"model {self.model!r} not found") from exc
        except anthropic.BadRequestError as exc:
            if "too long" in str(exc.message).lower():
                raise GeneratorUnavailable(self.name, "the prompt is longer than the model's context") from exc
            raise GeneratorUnavailable(self.name, f"HTTP 400: {exc.message}") from exc
        except anthropic.APIStatusError as exc:
            raise GeneratorUnavailable(self.name, f"HTTP {exc.status_code}: {exc.message}") from exc
        except (anthropic.APIError, _http.TransportError, ValueError) as exc:  # malformed event: JSONDecodeError
            raise GeneratorUnavailable(self.name, f"the stream broke: {type(exc).__name__}: {exc}") from exc
        if not stopped:
            raise GeneratorUnavailable(self.name, "the stream ended before the answer was finished")
        yield Usage(tokens_in, tokens_out)

    def reachable(self, timeout: float = 2.0) -> str | None:
        """None when the API answers its model list (``GET /v1/models?limit=1``) within ``timeout``
        seconds; otherwise a short reason (``"cannot connect to ..."``, ``"HTTP 401: ..."``). Never raises."""
        try:
            self.client.models.list(limit=1, timeout=timeout)
        except (anthropic.APITimeoutError, _http.TimeoutException):
            return f"no answer within {timeout:g} s"
        except anthropic.APIConnectionError:
            return f"cannot connect to {self.client.base_url}"
        except anthropic.APIStatusError as exc:
            return f"HTTP {exc.status_code}: {str(exc.message).removeprefix(f'Error code: {exc.status_code} - ')}"
        except Exception as exc:  # a malformed answer: report it, never raise
            return f"{type(exc).__name__}: {exc}"
        return None
