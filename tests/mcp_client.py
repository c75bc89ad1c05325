"""The official MCP SDK's client, driven from synchronous tests: over Streamable HTTP (with credentials
in headers) or over stdio (a subprocess)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

T = TypeVar("T")


def over_http(url: str, headers: dict[str, str], session: Callable[[Client], Awaitable[T]]) -> T:
    """Connect the SDK's client to ``url`` (the MCP endpoint) sending ``headers`` with every request, run
    ``session(client)`` and return what it returns."""

    async def main() -> T:
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                return await session(client)

    return asyncio.run(main())


def structured(result: Any) -> dict[str, Any]:
    """A tool result's structured content; fails with the tool's error text when it is an error."""
    assert not result.is_error, result.content
    return result.structured_content


def error_text(result: Any) -> str:
    """The text of a tool result that must be an error."""
    assert result.is_error, result.structured_content
    return " ".join(getattr(part, "text", "") for part in result.content)


def resource_json(result: Any) -> dict[str, Any]:
    """The JSON of a resource read's one text content."""
    (content,) = result.contents
    return json.loads(content.text)
