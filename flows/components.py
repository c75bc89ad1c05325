"""Build the stages' components from settings: the one place that maps configuration to objects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from connectors.beir import BeirCorpusConnector
from connectors.filesystem import FilesystemConnector
from enclave.settings import GeneratorSettings, Settings, SourceSettings
from indexes.chunker import MarkdownChunker
from indexes.edge_index import EdgeIndex
from indexes.embedder import DenseEmbedder
from indexes.parser import DocumentParser
from indexes.remote_index import IndexOwner, RemoteIndex
from indexes.retriever import Retriever
from indexes.server_index import ServerIndex
from indexes.sparse_embedder import Bm25Embedder
from indexes.vector_index import Fusion, VectorIndex, VectorIndexError
from llms.anthropic_generator import AnthropicGenerator
from llms.audit_log import AuditLog
from llms.cost_table import CostTable, TokenPrice
from llms.egress_policy import EgressPolicy
from llms.extractive_generator import ExtractiveGenerator
from llms.generator import Generator
from llms.generator_chain import GeneratorChain
from llms.ollama_generator import OllamaGenerator
from llms.openai_generator import OpenAIGenerator
from llms.question_condenser import QuestionCondenser
from llms.usage_log import UsageLog


def build_connector(source: SourceSettings) -> FilesystemConnector | BeirCorpusConnector:
    if source.kind == "beir":
        return BeirCorpusConnector(source.name, source.path, groups=tuple(source.groups),
                                   classification=source.classification)
    return FilesystemConnector(
        source.name, source.path, include=source.include, exclude=source.exclude,
        groups=source.groups, classification=source.classification,
    )


def build_embedder(settings: Settings) -> DenseEmbedder:
    e = settings.embedder
    return DenseEmbedder(e.model, device=e.device, batch_size=e.batch_size)


def build_sparse_embedder(settings: Settings) -> Bm25Embedder:
    b = settings.bm25
    return Bm25Embedder(language=b.language, k=b.k, b=b.b, avg_len=b.avg_len)


def build_retriever(settings: Settings, embedder: DenseEmbedder, index: VectorIndex) -> Retriever:
    """The configured retriever: mode, RRF fusion and top_k from ``settings.retrieval``."""
    r = settings.retrieval
    fusion = Fusion(k=r.rrf_k, weights=(r.dense_weight, r.sparse_weight), prefetch=r.prefetch)
    return Retriever(embedder, index, top_k=r.top_k, sparse_embedder=build_sparse_embedder(settings), mode=r.mode,
                     fusion=fusion)


def build_parser(settings: Settings) -> DocumentParser:
    i = settings.ingest
    return DocumentParser(max_bytes=i.max_file_bytes, timeout=i.parse_timeout, memory_bytes=i.parse_memory_bytes)


def build_chunker(settings: Settings, embedder: DenseEmbedder) -> MarkdownChunker:
    c = settings.chunker
    return MarkdownChunker(embedder, embedder.max_tokens, chunk_tokens=c.chunk_tokens, overlap_tokens=c.overlap_tokens)


def index_path(settings: Settings) -> Path:
    """Folder of the embedded index: ``<data_dir>/index/<collection>``."""
    return Path(settings.data_dir) / "index" / settings.index.collection


def build_index(settings: Settings, dimension: int | None = None) -> VectorIndex:
    """Open (creating if needed) the configured index. ``dimension=None`` opens an existing index at
    its own dimension without loading a model (raises VectorIndexError if there is none yet).

    An embedded shard held by another process (``enclave serve``) is used through that process: a
    :class:`RemoteIndex` to the owner its ``owner.json`` names. Raises VectorIndexError."""
    if settings.index.backend == "server":
        from qdrant_client import QdrantClient

        key = settings.index.api_key.get_secret_value() if settings.index.api_key else None
        return ServerIndex(QdrantClient(url=settings.index.url, api_key=key), settings.index.collection, dimension)
    try:
        return EdgeIndex(index_path(settings), dimension)
    except VectorIndexError as exc:
        owner = IndexOwner.find(index_path(settings))
        if owner is None or "open in another process" not in str(exc):
            raise
        return RemoteIndex(owner.url, owner.token, dimension)


def build_generator(spec: GeneratorSettings, embedder: DenseEmbedder | None) -> Generator:
    limits = {"timeout": spec.timeout, "first_token_timeout": spec.first_token_timeout or spec.timeout,
              "connect_timeout": spec.connect_timeout, "name": spec.name, "locality": spec.locality}
    if spec.kind == "ollama":
        return OllamaGenerator(spec.model or "", host=spec.host, **limits)
    if spec.kind == "openai":
        return OpenAIGenerator(spec.model or "", base_url=spec.host, api_key=spec.key(), **limits)
    if spec.kind == "anthropic":
        return AnthropicGenerator(spec.model or "", base_url=spec.host, api_key=spec.key(), **limits)
    return ExtractiveGenerator(embed=embedder.embed, name=spec.name, locality=spec.locality)


def audit_path(settings: Settings) -> Path:
    """The audit log of external calls: ``<data_dir>/audit.jsonl``."""
    return Path(settings.data_dir) / "audit.jsonl"


def build_chain(settings: Settings, embedder: DenseEmbedder) -> GeneratorChain:
    """The route with its egress policies (one per external generator), audit log, prices and breakers."""
    specs = settings.route_generators()
    policies = {}
    for spec in specs:
        if spec.locality == "external":
            redactor = None
            if spec.redact_pii:
                from llms.pii_redactor import (
                    PiiRedactor,  # presidio loads only where PII is redacted
                )

                redactor = PiiRedactor(entities=spec.pii_entities)
            policies[spec.name] = EgressPolicy(spec.max_label, redactor=redactor)
    c = settings.costs
    costs = CostTable({m: TokenPrice(p.input, p.output) for m, p in c.models.items()}, dict(c.local_hourly))
    return GeneratorChain([build_generator(spec, embedder) for spec in specs], policies=policies,
                          audit=AuditLog(audit_path(settings)), costs=costs,
                          usage=UsageLog(Path(settings.data_dir) / "usage.jsonl"),
                          breaker_failures=settings.circuit_breaker.failures,
                          breaker_cooldown=settings.circuit_breaker.cooldown)


def build_condenser(settings: Settings, chain: GeneratorChain) -> QuestionCondenser:
    """The route's local model generators (not extractive), limited to ``server.condense_timeout``
    seconds, sharing the chain's circuit breakers; with none, follow-ups get the history's keywords."""
    generators = []
    for spec in settings.route_generators():
        if spec.locality == "local" and spec.kind != "extractive":
            timeout = min(spec.timeout, settings.server.condense_timeout)
            generators.append(build_generator(spec.model_copy(update={
                "timeout": timeout, "first_token_timeout": min(spec.first_token_timeout or timeout, timeout)}), None))
    return QuestionCondenser(generators, breakers=chain.breakers)


class Resources:
    """Process-owned objects handed to a flow: an embedder and index already loaded, a progress callback.

    Usage::

        resources = Resources(embedder=embedder, index=index, progress=lambda event, n: ...)
        ingest(settings=settings, resources=resources)

    Prefect stores every flow parameter with the flow run, encoding unknown objects field by field;
    an embedder or an index would be walked down to its tensors. This holder has no ``__dict__`` and
    is not iterable, so Prefect records it as ``"<Resources>"`` and nothing more. Fields left None are
    built from settings by the flow (and closed by it). What it holds belongs to this process: shipped
    to another one (Prefect sends the flow run's context to Dask workers) it arrives empty.
    """

    __slots__ = ("embedder", "index", "progress")

    def __init__(
        self,
        embedder: DenseEmbedder | None = None,
        index: VectorIndex | None = None,
        progress: Callable[[str, int], None] | None = None,
    ) -> None:
        self.embedder = embedder
        self.index = index
        self.progress = progress

    def __reduce__(self):
        return (Resources, ())
