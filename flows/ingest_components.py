"""What a process uses to turn fetched bytes into embedded chunks: parser, chunker, dense and sparse embedders.

The ingest tasks run in the flow's process (threads, the default) or on Dask workers. In the flow's
process they get the pipeline's own [IngestComponents][enclave.flows.IngestComponents] (with its progress
callback); a Dask worker gets the picklable [ComponentSpec][enclave.flows.ComponentSpec] instead and
builds the components from it once, keeping them for the next batches (a model loads once per worker).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from enclave.flows.components import build_chunker, build_embedder, build_parser, build_sparse_embedder
from enclave.flows.progress import ProgressCallback
from enclave.indexes.chunker import MarkdownChunker
from enclave.indexes.embedder import DenseEmbedder
from enclave.indexes.parser import DocumentParser
from enclave.indexes.sparse_embedder import Bm25Embedder
from enclave.settings import Bm25Settings, ChunkerSettings, EmbedderSettings, IngestSettings, Settings

#: Components a worker process keeps, by spec: one per distinct configuration, the least recently used
#: closed beyond this.
WORKER_CACHE_SIZE = 2


@dataclass(frozen=True)
class ComponentSpec:
    """The settings that shape the ingest components, and nothing else (no secrets): what a Dask worker
    gets to build its own. Picklable."""

    embedder: EmbedderSettings
    bm25: Bm25Settings
    chunker: ChunkerSettings
    ingest: IngestSettings

    @classmethod
    def of(cls, settings: Settings) -> ComponentSpec:
        return cls(settings.embedder, settings.bm25, settings.chunker, settings.ingest)

    def key(self) -> str:
        """A stable text key of this configuration."""
        return "|".join(part.model_dump_json() for part in (self.embedder, self.bm25, self.chunker, self.ingest))

    def settings(self) -> Settings:
        return Settings(embedder=self.embedder, bm25=self.bm25, chunker=self.chunker, ingest=self.ingest)


class IngestComponents:
    """The parser, chunker and embedders of one process, and where its progress goes.

    Usage::

        components = IngestComponents.from_settings(settings, progress=show)   # in the flow's process
        components = IngestComponents.for_worker(spec)                         # on a Dask worker: cached
        document = components.parser.run(doc, data); chunks = components.chunker.run(document)
        components.close()

    ``embedder`` may be one already loaded (its model is shared by every embedder of that model in the
    process anyway). ``close`` stops the parser's worker process.
    """

    def __init__(self, spec: ComponentSpec, parser: DocumentParser, embedder: DenseEmbedder,
                 sparse_embedder: Bm25Embedder, chunker: MarkdownChunker, progress: ProgressCallback | None = None) -> None:
        self.spec = spec
        self.parser = parser
        self.embedder = embedder
        self.sparse_embedder = sparse_embedder
        self.chunker = chunker
        self.progress = progress

    @classmethod
    def from_settings(cls, settings: Settings, embedder: DenseEmbedder | None = None,
                      progress: ProgressCallback | None = None) -> IngestComponents:
        embedder = embedder or build_embedder(settings)
        return cls(ComponentSpec.of(settings), build_parser(settings), embedder, build_sparse_embedder(settings),
                   build_chunker(settings, embedder), progress)

    @classmethod
    def for_worker(cls, spec: ComponentSpec) -> IngestComponents:
        """This process's components for ``spec``, built on first use and kept (without progress)."""
        key = spec.key()
        with _WORKER_LOCK:
            found = _WORKER_COMPONENTS.get(key)
            if found is None:
                found = _WORKER_COMPONENTS[key] = cls.from_settings(spec.settings())
                while len(_WORKER_COMPONENTS) > WORKER_CACHE_SIZE:
                    _, evicted = _WORKER_COMPONENTS.popitem(last=False)
                    evicted.close()
            _WORKER_COMPONENTS.move_to_end(key)
            return found

    @staticmethod
    def resolve(given: IngestComponents | ComponentSpec) -> IngestComponents:
        """The components a task was given, or this process's for the spec it was given."""
        return given if isinstance(given, IngestComponents) else IngestComponents.for_worker(given)

    def close(self) -> None:
        self.parser.close()


_WORKER_COMPONENTS: OrderedDict[str, IngestComponents] = OrderedDict()
_WORKER_LOCK = threading.Lock()
