"""The MCP server: Enclave's documents for agents (Claude Desktop and Code, IDE assistants, agent
frameworks) over the Model Context Protocol, built on the official ``mcp`` SDK (``MCPServer``).

Tools (their arguments and results are the pydantic models of the HTTP API, so the filters, modes and
fields are the same as ``/v1/retrieve`` and ``/v1/ask``):

- ``search``: the chunks a query finds (title, uri, section, score, text...), best first;
- ``ask``: a cited answer, with the route taken and whether the documents answered at all;
- ``list_sources``: the sources the caller has documents in, with their counts and last sync.

Resources: ``enclave://documents/{doc_id}`` (``doc_id`` percent-encoded, as each search hit's
``resource`` gives it) reads one document's chunks in order, as JSON.

Two transports: Streamable HTTP mounted on ``enclave serve`` (``server.mcp.path``, default ``/mcp``;
stateless, so several workers behind a balancer need no sticky sessions), where every request is
authenticated as every other endpoint is (API key, trusted proxy, anonymous; 401/403 before the
protocol starts), and stdio (``enclave mcp``) for desktop clients, which runs as one principal
(``ENCLAVE_API_KEY``, or ``server.mcp.principal`` with ``server.mcp.groups``). Either way a tool sees
only the documents the principal's groups may see; search and ask count against the caller's rate limit
(``server.limits``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

from fastapi import HTTPException
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from enclave import __version__
from enclave.contracts import DocumentStatus
from enclave.flows.answer_pipeline import AnswerPipeline
from enclave.indexes.index_backend import Store, all_of, match, match_any
from enclave.indexes.sync_ledger import SyncLedger
from enclave.llms.fallback_router import AllGeneratorsFailed
from enclave.server.authentication import Authenticator, AuthError, Principal
from enclave.server.metrics import ServerMetrics
from enclave.server.rate_limit import RateLimiter
from enclave.server.request_limits import check_conversation
from enclave.server.routers.ask import AskResponse, SearchFilterIn, Turn, ask_response
from enclave.server.routers.retrieve import ChunkOut
from enclave.settings import Settings

#: Where the HTTP transport's authentication leaves the principal in the request's ASGI scope.
PRINCIPAL_SCOPE_KEY = "enclave.principal"
#: The URI template of a document's chunks.
DOCUMENT_URI = "enclave://documents/{doc_id}"
#: Most chunks one document resource returns.
MAX_DOCUMENT_CHUNKS = 1000
#: Every tool only reads: clients may run them without asking the user each time.
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)

T = TypeVar("T")


class McpUnavailable(Exception):
    """``enclave mcp`` has no principal to run as: neither ``ENCLAVE_API_KEY`` nor ``server.mcp.groups``."""


class SearchHit(ChunkOut):
    resource: str = Field(description="The document's resource URI (enclave://documents/...): read it for all its chunks.")


class SearchResult(BaseModel):
    chunks: list[SearchHit] = Field(description="Best first; only documents the caller's groups may see.")


class SourceOut(BaseModel):
    name: str
    documents: int = Field(description="Indexed documents in this source the caller may see.")
    chunks: int = Field(description="Their chunks.")
    last_synced: str | None = Field(description="When the source's last sync finished (ISO 8601 UTC); None: never.")


class SourceList(BaseModel):
    sources: list[SourceOut] = Field(description="Sources with at least one document the caller may see, by name.")


class DocumentChunk(BaseModel):
    chunk: int = Field(description="The chunk's number within its document, from 0.")
    section: str
    text: str


class DocumentOut(BaseModel):
    doc_id: str
    title: str
    uri: str
    source: str
    classification: str
    chunks: list[DocumentChunk] = Field(description=f"In order; at most {MAX_DOCUMENT_CHUNKS}.")


def document_uri(doc_id: str) -> str:
    """The resource URI of a document's chunks: ``enclave://documents/<doc_id percent-encoded>``."""
    return DOCUMENT_URI.format(doc_id=quote(doc_id, safe=""))


@dataclass
class McpContext:
    """What the tools run against, looked up on every call (a re-index swaps the app's pipeline).

    ``pipeline``: the answer pipeline now; ``executor``: where blocking work (embedding, search, the
    generator) runs; ``principal``: who calls, from the request context; ``rate_limiter``: None for no limit;
    ``metrics``: where ``ask`` counts its answers and its questions no generator answered (the app's
    [ServerMetrics][enclave.server.metrics.ServerMetrics]; None: not counted).
    """

    settings: Settings
    pipeline: Callable[[], AnswerPipeline]
    executor: Callable[[], Executor]
    principal: Callable[[Context], Principal]
    rate_limiter: RateLimiter | None = None
    metrics: ServerMetrics | None = None


def create_mcp_server(context: McpContext) -> MCPServer:
    """The MCP server with Enclave's tools and document resource, for either transport.

    Usage::

        server = create_mcp_server(McpContext(settings, lambda: pipeline, lambda: executor, lambda ctx: principal))
        await server.run_stdio_async()        # or McpHttpEndpoint(server, ...) for Streamable HTTP

    Tool failures the caller can act on (a blank or too long question, over the rate limit, no generator
    answered) come back as tool errors (``isError``) with the reason; an unknown or hidden document is a
    resource error ("no document ..."), the same for both so the answer tells nothing of what exists.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    server = MCPServer(
        "enclave", title="Enclave", version=__version__,
        instructions="Search and ask the organisation's documents. `search` finds passages (cite their title and uri); "
                     "`ask` answers with numbered citations or says the documents do not answer; `list_sources` "
                     "shows what is indexed. Read enclave://documents/{doc_id} for a whole document.",
    )
    root.handlers[:] = handlers  # the SDK's constructor calls logging.basicConfig (INFO, a rich handler): undo it
    root.setLevel(level)
    limits = context.settings.server.limits

    async def blocking(call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(context.executor(), call)

    def caller(ctx: Context, *, limited: bool) -> Principal:
        principal = context.principal(ctx)
        if limited and context.rate_limiter is not None:
            wait = context.rate_limiter.acquire(principal.caller_id)
            if wait > 0:
                raise ToolError(f"rate limit: {limits.requests_per_minute} requests a minute; try again in {wait:.1f} s")
        return principal

    @server.tool(annotations=READ_ONLY,
                 description="Find the passages of the organisation's documents that match a query (hybrid dense + "
                             "BM25 by default), best first, with title, uri, section and score. Only documents the "
                             "caller may see.")
    async def search(
        ctx: Context,
        query: Annotated[str, Field(min_length=1, max_length=100_000, description="What to search for, any language.")],
        top_k: Annotated[int, Field(ge=1, le=100, description="Passages to return.")] = 10,
        mode: Annotated[Literal["hybrid", "dense", "sparse"] | None,
                        Field(description="Retrieval mode; default from settings (hybrid).")] = None,
        filter: Annotated[SearchFilterIn | None, Field(description="Only documents from these sources, types, dates.")] = None,
    ) -> SearchResult:
        principal = caller(ctx, limited=True)
        if not query.strip():
            raise ToolError("the query is blank")
        if len(query) > limits.max_question_chars:
            raise ToolError(f"the query has {len(query)} characters; the limit is {limits.max_question_chars}")
        where = filter.to_search_filter() if filter else None
        pipeline = context.pipeline()
        chunks = await blocking(lambda: pipeline.retriever.run(query, principal.groups, top_k, None, where, mode))
        return SearchResult(chunks=[SearchHit(
            id=c.id, doc_id=c.doc_id, title=c.title, uri=c.uri, section=c.section, chunk=c.chunk, text=c.text,
            score=c.score, classification=c.classification, resource=document_uri(c.doc_id)) for c in chunks])

    @server.tool(annotations=READ_ONLY,
                 description="Answer a question from the organisation's documents, with [n] citations of the passages "
                             "used, the generators tried (route) and whether the documents answered it (answered: "
                             "false means they do not say, and the answer says so).")
    async def ask(
        ctx: Context,
        question: Annotated[str, Field(min_length=1, max_length=100_000, description="The question, any language.")],
        top_k: Annotated[int | None, Field(ge=1, le=50, description="Passages to retrieve; default from settings.")] = None,
        filter: Annotated[SearchFilterIn | None, Field(description="Only documents from these sources, types, dates.")] = None,
        history: Annotated[list[Turn] | None, Field(max_length=1000, description="Earlier turns, oldest first.")] = None,
    ) -> AskResponse:
        principal = caller(ctx, limited=True)
        turns = [turn.model_dump() for turn in history or []]
        try:
            check_conversation(limits, question, turns)
        except HTTPException as exc:
            raise ToolError(str(exc.detail)) from None
        where = filter.to_search_filter() if filter else None
        pipeline = context.pipeline()
        try:
            answer = await blocking(lambda: pipeline.ask(
                question.strip(), principal.groups, top_k, where, principal.name, turns))
        except AllGeneratorsFailed as exc:
            if context.metrics is not None:
                context.metrics.record_no_answer(exc.attempts)
            raise ToolError(f"no generator could answer: {exc}") from None
        if context.metrics is not None:
            context.metrics.record_answer(answer)
        return ask_response(answer)

    @server.tool(annotations=READ_ONLY,
                 description="The sources the caller has documents in: indexed documents, chunks, last sync.")
    async def list_sources(ctx: Context) -> SourceList:
        principal = caller(ctx, limited=False)
        pipeline = context.pipeline()
        return await blocking(lambda: visible_sources(pipeline, principal.groups))

    @server.resource(DOCUMENT_URI, name="document", mime_type="application/json",
                     description="One document's chunks in order (doc_id percent-encoded, as search hits give it).")
    async def document(doc_id: str, ctx: Context) -> str:
        principal = caller(ctx, limited=False)
        pipeline = context.pipeline()
        found = await blocking(lambda: document_chunks(pipeline, doc_id, principal.groups))
        if found is None:
            raise ResourceError(f"no document {doc_id!r}")
        return found.model_dump_json()

    return server


def visible_sources(pipeline: AnswerPipeline, groups: tuple[str, ...] | list[str]) -> SourceList:
    """Per source, the indexed documents whose ACL shares a group with ``groups`` (from the ledger; an
    entry written before Enclave kept its groups counts as hidden), with their chunk counts and the
    source's last sync. Sources with none are left out."""
    ledger = SyncLedger(pipeline.index)
    allowed = set(groups)
    counts: dict[str, list[int]] = {}
    for entry in ledger.entries().values():
        if entry.status == DocumentStatus.INDEXED and entry.groups is not None and allowed & set(entry.groups):
            tally = counts.setdefault(entry.source, [0, 0])
            tally[0] += 1
            tally[1] += entry.chunks
    last: dict[str, str] = {}
    for run in ledger.runs():  # newest first
        last.setdefault(run.source, run.finished_at)
    return SourceList(sources=[SourceOut(name=name, documents=n, chunks=c, last_synced=last.get(name))
                               for name, (n, c) in sorted(counts.items())])


def document_chunks(pipeline: AnswerPipeline, doc_id: str, groups: tuple[str, ...] | list[str]) -> DocumentOut | None:
    """The chunks of ``doc_id`` whose ACL shares a group with ``groups``, in order (at most
    MAX_DOCUMENT_CHUNKS); None when there are none (no such document, or hidden from these groups)."""
    if not groups:
        return None
    selector = all_of(match("doc_id", doc_id), match_any("groups", list(groups)))
    payloads: list[dict[str, Any]] = []
    for _, payload in pipeline.index.scroll(Store.CHUNKS, selector):
        payloads.append(payload)
        if len(payloads) >= MAX_DOCUMENT_CHUNKS:
            break
    if not payloads:
        return None
    payloads.sort(key=lambda p: int(p.get("chunk", 0)))
    first = payloads[0]
    return DocumentOut(
        doc_id=doc_id, title=str(first.get("title", "")), uri=str(first.get("uri", "")),
        source=str(first.get("source", "")), classification=str(first.get("classification", "")),
        chunks=[DocumentChunk(chunk=int(p.get("chunk", 0)), section=str(p.get("section", "")), text=str(p.get("text", "")))
                for p in payloads])


class McpHttpEndpoint:
    """The ASGI endpoint of MCP's Streamable HTTP transport, behind Enclave's authentication.

    Usage::

        endpoint = McpHttpEndpoint(create_mcp_server(...), settings, lambda: app.state.authenticator)
        app.router.routes.append(Route(settings.server.mcp.path, endpoint=endpoint))
        async with endpoint.running():       # in the app's lifespan: each start gets a fresh session manager
            ...

    Every HTTP request is authenticated as the other endpoints do; the
    [Principal][enclave.server.authentication.Principal] goes into the scope (``PRINCIPAL_SCOPE_KEY``) for
    the tools, otherwise the answer is 401 (with ``WWW-Authenticate: Bearer``) or 403 as JSON ``{"detail"}``
    before the transport sees the request; 503 outside ``running()``. Stateless: every POST carries what it
    needs, so no session outlives a request and any worker can answer it.
    """

    def __init__(self, server: MCPServer, settings: Settings, authenticator: Callable[[], Authenticator]) -> None:
        self.server = server
        self.settings = settings
        self.authenticator = authenticator
        self._transport: ASGIApp | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve requests within the block (the SDK's session manager runs once per instance, so each
        start of the app builds a new one)."""
        path = self.settings.server.mcp.path
        starlette_app = self.server.streamable_http_app(
            streamable_http_path=path, stateless_http=True,
            max_request_body_size=self.settings.server.limits.max_body_bytes,
            transport_security=transport_security(self.settings))
        route = next(r for r in starlette_app.routes if isinstance(r, Route) and r.path == path)
        async with self.server.session_manager.run():
            self._transport = route.app
            try:
                yield
            finally:
                self._transport = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = self._transport
        if transport is None:
            await JSONResponse({"detail": "the MCP server is not running"}, status_code=503)(scope, receive, send)
            return
        client = scope.get("client")
        try:
            principal = self.authenticator().authenticate(Headers(scope=scope), client[0] if client else None)
        except AuthError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            await JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)(scope, receive, send)
            return
        scope[PRINCIPAL_SCOPE_KEY] = principal
        await transport(scope, receive, send)


def http_principal(ctx: Context) -> Principal:
    """The principal McpHttpEndpoint found for the HTTP request that carries this MCP call."""
    request = ctx.request_context.request
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY) if request is not None else None
    if principal is None:  # pragma: no cover - the middleware stands in front of every request
        raise ToolError("not authenticated")
    return principal


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection per ``server.mcp.allowed_hosts`` (empty: off; authentication still applies)."""
    hosts = settings.server.mcp.allowed_hosts
    if not hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def stdio_principal(settings: Settings, environ: dict[str, str] | None = None) -> Principal:
    """Who ``enclave mcp`` runs as: the API key in ``ENCLAVE_API_KEY`` (checked against
    ``server.auth.api_keys``), else ``server.mcp.principal`` with ``server.mcp.groups``. Raises AuthError
    for a key that is not configured, McpUnavailable when neither is given."""
    environ = os.environ if environ is None else environ
    key = environ.get("ENCLAVE_API_KEY", "").strip()
    if key:
        return Authenticator(settings.server.auth).authenticate({"authorization": f"Bearer {key}"}, None)
    mcp = settings.server.mcp
    if not mcp.groups:
        raise McpUnavailable("enclave mcp needs a principal: set ENCLAVE_API_KEY to one of server.auth.api_keys, "
                             "or server.mcp.groups (and server.mcp.principal) in the settings")
    return Principal(mcp.principal, tuple(mcp.groups), "configured", f"mcp:{mcp.principal}")


def run_stdio(settings: Settings, principal: Principal) -> None:
    """Serve MCP on stdin/stdout as ``principal`` until the client closes the stream (``enclave mcp``).
    Loads the answer pipeline (model, index) first; raises what
    ``AnswerPipeline.from_settings`` ([AnswerPipeline][enclave.flows.answer_pipeline.AnswerPipeline]) raises."""
    pipeline = AnswerPipeline.from_settings(settings)
    executor = ThreadPoolExecutor(8, thread_name_prefix="mcp")
    limits = settings.server.limits
    limiter = RateLimiter(limits.requests_per_minute, limits.burst) if limits.requests_per_minute else None
    server = create_mcp_server(McpContext(settings, lambda: pipeline, lambda: executor, lambda ctx: principal, limiter))
    try:
        asyncio.run(server.run_stdio_async())
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        pipeline.close()


__all__ = [
    "DOCUMENT_URI", "McpContext", "McpHttpEndpoint", "McpUnavailable", "create_mcp_server", "document_chunks",
    "document_uri", "http_principal", "run_stdio", "stdio_principal", "visible_sources",
]
