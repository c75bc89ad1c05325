"""The request body size limit: 413 before the app reads a body larger than ``max_body_bytes``."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """ASGI middleware: a request whose body exceeds ``max_bytes`` gets 413 with a JSON ``detail``.

    Usage::

        app.add_middleware(BodySizeLimit, max_bytes=1_048_576, exempt=("/internal/",))

    A ``Content-Length`` over the limit is refused before anything is read; a chunked body is read up to
    the limit (bytes) and refused when it goes beyond. Paths starting with one of ``exempt`` are passed
    through (the index's internal routes carry vector batches and have their own token).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send)
            return
        if length is not None or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            if length is not None and not length.isdigit():
                await self._refuse(send, 400, "Content-Length is not a number")
                return
            await self.app(scope, receive, send)
            return
        # no Content-Length (chunked): read it all here, within the limit, then hand it on
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, status: int = 413, detail: str | None = None) -> None:
        detail = detail or f"request body larger than {self.max_bytes} bytes (server.limits.max_body_bytes)"
        payload = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})
