"""Enclave: RAG workflow orchestration for documents that must stay inside your walls.

Usage::

    from enclave import AnswerPipeline, IngestPipeline, load_settings

    settings = load_settings("enclave.yaml")
    with IngestPipeline.from_settings(settings) as pipeline:
        pipeline.run("handbook")                       # new and changed documents parsed, chunked, embedded
    pipeline = AnswerPipeline.from_settings(settings)
    answer = pipeline.ask("How many leave days do I get?", groups=["staff"])
    print(answer.text, [c.title for c in answer.citations])

Everything lives in one namespace: the stages are ``enclave.connectors``, ``enclave.indexes``,
``enclave.prompts``, ``enclave.llms``, ``enclave.flows`` and ``enclave.server``, in the order data
flows; ``enclave.settings`` holds the one settings model and ``enclave.contracts`` the data that crosses
the stages. The names below are the curated public API; they load on first use, so ``import enclave``
(and ``enclave --help``) imports neither torch nor Prefect.
"""

from typing import TYPE_CHECKING

from enclave.lazy_exports import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from enclave.connectors import BeirCorpusConnector, FilesystemConnector
    from enclave.contracts import (
        Answer,
        Attempt,
        AttemptOutcome,
        Chunk,
        Citation,
        Classification,
        Connector,
        DocumentStatus,
        Generation,
        GenerationRequest,
        Generator,
        GeneratorUnavailable,
        Locality,
        ScoredChunk,
        SourceDocument,
        SyncOutcome,
        Usage,
    )
    from enclave.flows import (
        AnswerPipeline,
        IngestPipeline,
        IngestReport,
        ProgressEvent,
        answer,
        evaluate,
        ingest,
        ingest_source,
        open_index,
        reporting_progress,
    )
    from enclave.indexes import ChunkStore, IndexUnavailable, Retriever, SearchFilter, SyncLedger
    from enclave.llms import (
        AllGeneratorsFailed,
        AnthropicGenerator,
        BreakerGuard,
        EgressGuard,
        EgressPolicy,
        ExtractiveGenerator,
        FallbackRouter,
        OllamaGenerator,
        OpenAIGenerator,
    )
    from enclave.server.app import create_app
    from enclave.settings import Settings, SettingsError, load_settings

__all__ = ["__version__", "AllGeneratorsFailed", "Answer", "AnswerPipeline", "AnthropicGenerator", "Attempt",
    "AttemptOutcome", "BeirCorpusConnector", "BreakerGuard", "Chunk", "ChunkStore", "Citation", "Classification",
    "Connector", "DocumentStatus", "EgressGuard", "EgressPolicy", "ExtractiveGenerator", "FallbackRouter",
    "FilesystemConnector", "Generation", "GenerationRequest", "Generator", "GeneratorUnavailable",
    "IndexUnavailable", "IngestPipeline", "IngestReport", "Locality", "OllamaGenerator", "OpenAIGenerator",
    "ProgressEvent", "Retriever", "ScoredChunk", "SearchFilter", "Settings", "SettingsError", "SourceDocument",
    "SyncLedger", "SyncOutcome", "Usage", "answer", "create_app", "evaluate", "ingest", "ingest_source",
    "load_settings", "open_index", "reporting_progress"]
__getattr__, __dir__ = lazy_exports(globals(), {
    "enclave.settings": ["Settings", "SettingsError", "load_settings"],
    "enclave.contracts": [
        "Answer", "Attempt", "AttemptOutcome", "Chunk", "Citation", "Classification", "Connector",
        "DocumentStatus", "Generation", "GenerationRequest", "Generator", "GeneratorUnavailable", "Locality",
        "ScoredChunk", "SourceDocument", "SyncOutcome", "Usage",
    ],
    "enclave.connectors": ["BeirCorpusConnector", "FilesystemConnector"],
    "enclave.indexes": ["ChunkStore", "IndexUnavailable", "Retriever", "SearchFilter", "SyncLedger"],
    "enclave.llms": [
        "AllGeneratorsFailed", "AnthropicGenerator", "BreakerGuard", "EgressGuard", "EgressPolicy",
        "ExtractiveGenerator", "FallbackRouter", "OllamaGenerator", "OpenAIGenerator",
    ],
    "enclave.flows": [
        "AnswerPipeline", "IngestPipeline", "IngestReport", "ProgressEvent", "answer", "evaluate", "ingest",
        "ingest_source", "open_index", "reporting_progress",
    ],
    "enclave.server.app": ["create_app"],
})
