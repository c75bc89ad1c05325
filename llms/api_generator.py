"""What the generators of hosted chat APIs (OpenAI-compatible, Anthropic) share: their configuration,
their time limits, a client made on first use, and ``run`` as the whole of ``stream``."""

from __future__ import annotations

from typing import Any

from enclave.contracts import Generation, GenerationRequest, Locality
from enclave.llms.generator import collect


class ApiGenerator:
    """Base of [OpenAIGenerator][enclave.llms.OpenAIGenerator] and
    [AnthropicGenerator][enclave.llms.AnthropicGenerator].

    Usage (a subclass gives ``default_name``, ``_make_client`` and ``stream``)::

        generator = OpenAIGenerator("gpt-4o-mini", base_url=url, api_key=key, first_token_timeout=20)
        generator.client            # the official client, made on first use, never retrying on its own

    Time limits in seconds: ``connect_timeout`` to connect, ``first_token_timeout`` for the first piece
    of the answer and any later gap between pieces, ``timeout`` for the whole answer. ``locality`` is
    ``external`` by default: such a generator only receives what the egress policy lets out.
    """

    default_name = "api"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        first_token_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        name: str | None = None,
        locality: Locality = Locality.EXTERNAL,
        max_tokens: int | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.first_token_timeout = first_token_timeout
        self.connect_timeout = connect_timeout
        self.name = name or self.default_name
        self.locality = Locality(locality)
        self.max_tokens = max_tokens
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The API's official client, made on first use with these time limits and no retries."""
        if self._client is None:
            self._client = self._make_client(read_timeout=min(self.first_token_timeout, self.timeout))
        return self._client

    def _make_client(self, read_timeout: float) -> Any:
        raise NotImplementedError

    def reachable(self, timeout: float = 2.0) -> str | None:
        """None when the API answers a cheap request (its model list) within ``timeout`` seconds,
        otherwise a short reason; never raises. A subclass gives it."""
        raise NotImplementedError

    def run(self, request: GenerationRequest) -> Generation:
        """The whole answer; raises GeneratorUnavailable (see the subclass)."""
        return collect(self, request)
