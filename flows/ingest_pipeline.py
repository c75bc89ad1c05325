"""Sync a source into the index: list, compare with the ledger, fetch, parse, chunk, embed, write, delete.

Read [IngestPipeline.run][enclave.flows.ingest_pipeline.IngestPipeline.run] top to bottom. Only new or changed documents
go through fetch → parse → chunk/embed (one task per batch of documents, ``ingest.batches_in_flight``
batches at a time so the next batch parses while this one embeds) → upsert (in this process, the index's
one writer). Documents gone from the source are deleted; each run leaves a run record for
``enclave status``. The write order (see ``upsert_chunks``) means a crash at any point leaves a state the
next run repairs: the ledger still shows the old version (or a ``pending`` entry for a new document),
and point ids are deterministic.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from enclave.contracts import Connector, DocumentStatus, SourceDocument, StatefulConnector, SyncOutcome
from enclave.flows.components import build_connector
from enclave.flows.index_location import open_index
from enclave.flows.index_manifest import check_manifest, index_manifest
from enclave.flows.ingest_components import IngestComponents
from enclave.flows.ingest_report import DocumentOutcome, IngestReport
from enclave.flows.ingest_tasks import (
    UNAVAILABLE,
    EmbeddedBatch,
    delete_documents,
    embed_documents,
    fetch_documents,
    list_documents,
    parse_documents,
    update_permissions,
    upsert_chunks,
)
from enclave.flows.progress import ProgressCallback, ProgressEvent, ProgressKind
from enclave.indexes.chunk_store import ChunkStore
from enclave.indexes.embedder import DenseEmbedder
from enclave.indexes.index_backend import IndexBackend, now_iso
from enclave.indexes.parser import UNREADABLE_TYPE
from enclave.indexes.sync_ledger import LedgerEntry, RunRecord, SyncLedger
from enclave.settings import Settings, SourceSettings


@dataclass
class SyncPlan:
    """A source's listing compared with its ledger: ``todo`` (new, changed, or failed and retried),
    ``settled`` (outcomes of documents whose version is unchanged: nothing to fetch), ``gone`` (ledger
    entries of documents the source no longer lists) and ``acl_changed`` (indexed documents whose
    version is unchanged but whose groups or classification changed, with their entries: a payload
    update each, nothing to fetch or embed; their outcomes are in ``settled`` as ``acl_updated``)."""

    todo: list[SourceDocument]
    settled: list[DocumentOutcome]
    gone: list[LedgerEntry]
    acl_changed: list[tuple[SourceDocument, LedgerEntry]] = field(default_factory=list)

    @staticmethod
    def of(docs: Sequence[SourceDocument], known: dict[str, LedgerEntry], retry_failed: bool = False,
           readable: Callable[[str], bool] | None = None) -> SyncPlan:
        """A failed document whose version has not changed stays failed (reported again, not parsed)
        unless ``retry_failed`` or it failed as ``unavailable`` (a transient fetch error: tried again every
        sync). A skipped one stays skipped, except one skipped because its type could not be read
        (``unsupported type``, ``no OCR engine``, ``no office converter``) when ``readable(extension)`` says
        the parser reads it now (Tesseract or LibreOffice installed, OCR turned on), and, with
        ``retry_failed``, one skipped with ``no text`` (a scan from before OCR)."""
        listed = {doc.doc_id for doc in docs}
        plan = SyncPlan([], [], [entry for doc_id, entry in known.items() if doc_id not in listed])
        for doc in docs:
            entry = known.get(doc.doc_id)
            retry = entry is not None and entry.status == DocumentStatus.FAILED and (retry_failed or entry.reason == UNAVAILABLE)
            if entry is not None and entry.status == DocumentStatus.SKIPPED:
                retry = (entry.reason in UNREADABLE_TYPE and readable is not None and readable(doc.extension)) or (
                    retry_failed and entry.reason == "no text")
            if entry and entry.version == doc.version and not retry:
                failed = entry.status == DocumentStatus.FAILED
                status = SyncOutcome(entry.status) if entry.status in (DocumentStatus.FAILED, DocumentStatus.SKIPPED) \
                    else SyncOutcome.UNCHANGED
                if status == SyncOutcome.UNCHANGED and not entry.same_acl(doc.groups, doc.classification):
                    plan.acl_changed.append((doc, entry))
                    status = SyncOutcome.ACL_UPDATED
                detail = f"not retried: unchanged since {entry.updated_at}" if failed else entry.detail
                plan.settled.append(DocumentOutcome(doc.doc_id, doc.uri, status, chunks=entry.chunks,
                                                    reason=entry.reason, detail=detail))
            else:
                plan.todo.append(doc)
        return plan


class IngestPipeline:
    """Syncs sources into the index; the counterpart of [AnswerPipeline][enclave.flows.AnswerPipeline].

    Usage::

        with IngestPipeline.from_settings(load_settings("enclave.yaml"), progress=print) as pipeline:
            report = pipeline.run("handbook")                            # a configured source, by name
            report = pipeline.run(FilesystemConnector("notes", "~/notes"))   # or any Connector
        report.counts()                                                   # {"indexed": 12, "unchanged": 230}

    ``run`` takes a configured source's name, its [SourceSettings][enclave.settings.SourceSettings], or
    any [Connector][enclave.contracts.Connector], and returns an [IngestReport][enclave.flows.IngestReport].
    Inside a Prefect flow run its steps are task runs on the flow's task runner (threads, or Dask
    workers); outside one they are plain calls, fetch, parse and embed in a thread pool of
    ``ingest.batches_in_flight`` threads (no Prefect API, no task retries). ``progress`` is called with
    [ProgressEvent][enclave.flows.ProgressEvent]s. ``index`` and ``embedder`` may be ones the caller
    already holds (left open); what the pipeline opens, ``close`` closes. Nothing heavy loads before a document
    needs it: the index opens at the model's dimension read from its folder's configuration, the model (and
    torch or OpenVINO, and LlamaIndex's node parsers) loads with the first document to chunk and the parse worker
    starts with the first to convert, so an unchanged re-sync loads no model and starts no process (see
    [IngestComponents][enclave.flows.IngestComponents]); a model that cannot load fails that ``run``
    with [EmbedderError][enclave.indexes.embedder.EmbedderError], changing nothing. Raises KeyError for an unknown
    source name, the connector's error for a listing that fails (FileNotFoundError for a missing
    folder) and [IndexUnavailable][enclave.indexes.IndexUnavailable] when the index cannot be used
    ([IndexOutdated][enclave.flows.index_manifest.IndexOutdated] when it was built with other embedder, chunker or
    BM25 settings: `enclave reindex`). The first ingest into an index keeps those settings as its manifest.
    """

    def __init__(self, settings: Settings, index: IndexBackend, components: IngestComponents,
                 owns_index: bool = False) -> None:
        self.settings = settings
        self.index = index
        self.store = ChunkStore(index)
        self.ledger = SyncLedger(index)
        self.components = components
        self._owns_index = owns_index

    @classmethod
    def from_settings(cls, settings: Settings, index: IndexBackend | None = None, embedder: DenseEmbedder | None = None,
                      progress: ProgressCallback | None = None) -> IngestPipeline:
        components = IngestComponents.from_settings(settings, embedder=embedder, progress=progress)
        backend = None
        try:
            backend = index or open_index(settings, components.embedder.dimension)
            if check_manifest(backend, settings) is None:
                SyncLedger(backend).save_manifest(index_manifest(settings, components.embedder.dimension))
        except BaseException:
            components.close()
            if index is None and backend is not None:
                backend.close()
            raise
        return cls(settings, backend, components, owns_index=index is None)

    def __enter__(self) -> IngestPipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, source: str | SourceSettings | Connector, retry_failed: bool = False) -> IngestReport:
        """Sync one source into the index; returns its report. A document that failed before and has not
        changed is not parsed again (its failure is reported again, "not retried") unless ``retry_failed``."""
        connector = self._connector(source)
        started_at, started = now_iso(), time.perf_counter()
        report = IngestReport(source=connector.source)

        stateful = isinstance(connector, StatefulConnector)
        if stateful:
            connector.restore(self.ledger.connector_state(connector.source))
        docs = self._call(list_documents, connector)
        known = self.ledger.entries(connector.source)
        plan = SyncPlan.of(docs, known, retry_failed, readable=self.components.parser.reads)
        report.outcomes += plan.settled
        self._progress(ProgressKind.PLANNED, connector.source, len(docs) + len(plan.gone))
        self._progress(ProgressKind.DOCUMENTS, connector.source, len(plan.settled))

        self._call(update_permissions, self.store, self.ledger, plan.acl_changed)
        for batch in self._prepared(connector, plan.todo, known):
            self._call(upsert_chunks, self.store, self.ledger, batch)
            report.outcomes += [item.outcome for item in batch.parsed]
            report.chunks_embedded += len(batch.vectors)
            if not self._components_here():  # a Dask worker could not report its chunks
                self._progress(ProgressKind.CHUNKS, connector.source, len(batch.vectors))
            self._progress(ProgressKind.DOCUMENTS, connector.source, len(batch.parsed))

        self._call(delete_documents, self.store, self.ledger, plan.gone)
        report.outcomes += [DocumentOutcome(e.doc_id, e.uri, SyncOutcome.DELETED, chunks=e.chunks) for e in plan.gone]
        self._progress(ProgressKind.DOCUMENTS, connector.source, len(plan.gone))
        if stateful and (state := connector.state()):
            self.ledger.save_connector_state(connector.source, state)
        report.seconds = time.perf_counter() - started
        self.ledger.record_run(RunRecord(source=connector.source, started_at=started_at, finished_at=now_iso(),
                                         seconds=round(report.seconds, 3), counts=report.counts(),
                                         chunks_embedded=report.chunks_embedded))
        return report

    def close(self) -> None:
        """Stop the parse worker; close the index if this pipeline opened it."""
        self.components.close()
        if self._owns_index:
            self.index.close()

    # -- how the steps run ------------------------------------------------------------------------------------------
    def _connector(self, source: str | SourceSettings | Connector) -> Connector:
        if isinstance(source, str):
            return build_connector(self.settings.source(source))
        if isinstance(source, SourceSettings):
            return build_connector(source)
        return source

    def _prepared(self, connector: Connector, todo: Sequence[SourceDocument],
                  known: dict[str, LedgerEntry]) -> Iterator[EmbeddedBatch]:
        """Each batch of ``todo`` fetched, parsed and embedded, in order, with up to
        ``ingest.batches_in_flight`` batches under way at once."""
        size = self.settings.ingest.batch_documents
        batches = (todo[start : start + size] for start in range(0, len(todo), size))
        pool = None if FlowRunContext.get() else ThreadPoolExecutor(self.settings.ingest.batches_in_flight,
                                                                     thread_name_prefix="ingest")
        components = self.components if self._components_here() else self.components.spec
        pending: deque[Any] = deque()

        def submit(batch: Sequence[SourceDocument]) -> None:
            mine = {d.doc_id: known[d.doc_id] for d in batch if d.doc_id in known}
            if pool is None:  # a flow run: task runs on its task runner, chained by their futures
                fetched = fetch_documents.submit(connector, batch)
                parsed = parse_documents.submit(batch, fetched, mine, components)
                pending.append(embed_documents.submit(parsed, components))
            else:
                pending.append(pool.submit(_prepare, connector, batch, mine, components))

        try:
            for batch in itertools.islice(batches, self.settings.ingest.batches_in_flight):
                submit(batch)
            while pending:
                prepared = pending.popleft().result()
                for batch in itertools.islice(batches, 1):
                    submit(batch)
                yield prepared
        finally:  # on an error, batches not yet started are dropped; a flow run's task runner finishes its own
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _call(step: Any, *args: Any) -> Any:
        """A step: a task run inside a flow run (with its retries), a plain call outside one."""
        return step(*args) if FlowRunContext.get() else step.fn(*args)

    @staticmethod
    def _components_here() -> bool:
        """Whether submitted steps run in this process (threads), so they can use its components."""
        context = FlowRunContext.get()
        return context is None or isinstance(context.task_runner, ThreadPoolTaskRunner)

    def _progress(self, kind: ProgressKind, source: str, amount: int) -> None:
        if self.components.progress and amount:
            self.components.progress(ProgressEvent(kind, source, amount))


def _prepare(connector: Connector, batch: Sequence[SourceDocument], known: dict[str, LedgerEntry],
             components: IngestComponents) -> EmbeddedBatch:
    """Fetch, parse and embed one batch outside a flow run (the steps' own functions, in a pool thread)."""
    fetched = fetch_documents.fn(connector, batch)
    return embed_documents.fn(parse_documents.fn(batch, fetched, known, components), components)
