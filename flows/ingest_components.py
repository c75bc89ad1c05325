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
    process anyway). Nothing heavy happens before it is needed: the chunker (which asks the embedder for
    its tokenizer and maximum length, loading the model) and the BM25 embedder are built on first use,
    when not given, and the parser starts its worker process with the first document to convert; a sync
    with nothing new to parse, chunk or embed loads no model and starts no process. ``close`` stops the
    parser's worker process.
    """

    def __init__(self, spec: ComponentSpec, parser: DocumentParser, embedder: DenseEmbedder,
                 sparse_embedder: Bm25Embedder | None = None, chunker: MarkdownChunker | None = None,
                 progress: ProgressCallback | None = None) -> None:
        self.spec = spec
        self.parser = parser
        self.embedder = embedder
        self._sparse_embedder = sparse_embedder
        self._chunker = chunker
        self.progress = progress
        self._settings: Settings | None = None  # what from_settings was given, to build the rest from
        self._build_lock = threading.Lock()  # batches in flight may ask for the chunker at once

    @classmethod
    def from_settings(cls, settings: Settings, embedder: DenseEmbedder | None = None,
                      progress: ProgressCallback | None = None) -> IngestComponents:
        components = cls(ComponentSpec.of(settings), build_parser(settings), embedder or build_embedder(settings),
                         progress=progress)
        components._settings = settings
        return components

    def _built_from(self) -> Settings:
        return self._settings if self._settings is not None else self.spec.settings()

    @property
    def chunker(self) -> MarkdownChunker:
        """The chunker, sized by the embedder's tokenizer: built on first use (this loads the model)."""
        if self._chunker is None:
            with self._build_lock:
                if self._chunker is None:
                    self._chunker = build_chunker(self._built_from(), self.embedder)
        return self._chunker

    @property
    def sparse_embedder(self) -> Bm25Embedder:
        """The BM25 embedder: built on first use."""
        if self._sparse_embedder is None:
            with self._build_lock:
                if self._sparse_embedder is None:
                    self._sparse_embedder = build_sparse_embedder(self._built_from())
        return self._sparse_embedder

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
