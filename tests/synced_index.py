"""An embedded index and one configured source synced into it, as `enclave ingest --source <name>` does:
what the connector tests sync, count and search."""

from __future__ import annotations

from enclave.flows import IngestPipeline, IngestReport, index_path
from enclave.indexes import ChunkStore, EdgeIndex, SyncLedger
from enclave.settings import Settings


class SyncedIndex:
    """``run()`` syncs ``source`` (with ``settings``, or other settings for that run); ``sees(groups, item)``
    says whether a search as ``groups`` for ``query`` finds the document ``doc_prefix + item``."""

    def __init__(self, settings: Settings, embedder, source: str, doc_prefix: str = "", query: str = "") -> None:
        self.settings, self.embedder, self.source = settings, embedder, source
        self.doc_prefix, self.query = doc_prefix, query
        self.backend = EdgeIndex(index_path(settings), embedder.dimension)
        self.store, self.ledger = ChunkStore(self.backend), SyncLedger(self.backend)

    def run(self, settings: Settings | None = None) -> IngestReport:
        with IngestPipeline.from_settings(settings or self.settings, index=self.backend,
                                          embedder=self.embedder) as pipeline:
            return pipeline.run(self.source)

    def sees(self, groups: list[str], item: str) -> bool:
        hits = self.store.search(self.embedder.embed([self.query])[0], groups=groups, limit=50)
        return any(h.doc_id == self.doc_prefix + item for h in hits)

    def close(self) -> None:
        self.backend.close()
