"""The ``ingest`` flow: list, fetch, parse, chunk, embed and upsert a source's documents, syncing the index.

Read top to bottom: the flow lists the source, compares each document's version with the ledger,
and sends only new or changed documents through fetch → parse → chunk/embed (tasks submitted to the
flow's task runner, one per batch of documents) → upsert (in the flow's process, the index's one
writer). Documents gone from the source are deleted; each run leaves a run record for
``enclave status`` and a Prefect table artifact. The write order (see :func:`upsert_chunks`) means a
crash at any point leaves a state the next run repairs: the ledger still shows the old version (or a
``pending`` entry for a new document), and point ids are deterministic.

Scale-out: ``ingest.with_options(task_runner=DaskTaskRunner(...))`` (or ``ingest.task_runner: dask``
in settings, through :func:`ingest_with_runner`) runs fetch, parse and embed on Dask workers.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from llama_index.core import Document
from llama_index.core.schema import TextNode
from prefect import Flow, flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from connectors.document import SourceDocument
from enclave.settings import Settings, SourceSettings, load_settings
from flows.components import (
    Resources,
    build_chunker,
    build_connector,
    build_embedder,
    build_index,
    build_parser,
    build_sparse_embedder,
)
from indexes.chunker import MarkdownChunker
from indexes.embedder import DenseEmbedder
from indexes.parser import DocumentParser, ParseError
from indexes.sparse_embedder import Bm25Embedder
from indexes.vector_index import (
    LedgerEntry,
    RunRecord,
    SparseVector,
    VectorIndex,
    now_iso,
)

#: progress(event, amount): "documents" (total to look at, once), "document" (one done), "chunks" (embedded).
Progress = Callable[[str, int], None]


@dataclass
class DocumentOutcome:
    """What a run did with one document. ``status``: indexed, updated, unchanged, skipped, failed, deleted."""

    source_id: str
    uri: str
    status: str
    chunks: int = 0
    reason: str = ""
    detail: str = ""


@dataclass
class IngestReport:
    """The result of ingesting one source: an outcome per document, chunks embedded, seconds taken."""

    source: str
    outcomes: list[DocumentOutcome] = field(default_factory=list)
    chunks_embedded: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Documents by status, e.g. {"indexed": 200, "failed": 12, "skipped": 31}."""
        return dict(Counter(o.status for o in self.outcomes))

    def problems(self) -> list[DocumentOutcome]:
        """Failed and skipped documents, each with its reason."""
        return [o for o in self.outcomes if o.status in ("failed", "skipped")]

    def reasons(self) -> dict[str, int]:
        """Failed and skipped documents counted by ``status: reason``."""
        return dict(Counter(f"{o.status}: {o.reason}" for o in self.problems()))


@dataclass
class _Parsed:
    doc: SourceDocument
    document: Document | None  # None: nothing to index (see outcome)
    outcome: DocumentOutcome
    previous: LedgerEntry | None
    content_hash: str = ""


@task(name="list-documents", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def list_documents(source: SourceSettings) -> list[SourceDocument]:
    """The source's documents (identity, version, ACL; no content)."""
    return list(build_connector(source).run())


#: fetch errors that may pass if tried again (a network share, an object store): the task retries them
TRANSIENT_ERRORS = (TimeoutError, ConnectionError, InterruptedError, BlockingIOError)


@task(name="fetch-documents", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def fetch_documents(docs: Sequence[SourceDocument]) -> list[bytes | DocumentOutcome]:
    """The bytes of each document, or a failed outcome (reason ``unreadable``) for one that cannot be
    read (missing, permission denied). Transient errors (TIMEOUTS, connection resets) raise, so the task
    retries; a document still failing after the retries fails the run's batch with that error."""
    fetched: list[bytes | DocumentOutcome] = []
    for doc in docs:
        try:
            fetched.append(doc.fetch())
        except TRANSIENT_ERRORS:
            raise
        except OSError as exc:
            fetched.append(DocumentOutcome(doc.source_id, doc.uri, "failed", reason="unreadable", detail=str(exc)))
    return fetched


@task(name="parse-documents", cache_policy=NO_CACHE)
def parse_documents(
    docs: Sequence[SourceDocument], fetched: Sequence[bytes | DocumentOutcome],
    ledger: dict[str, LedgerEntry], parser: DocumentParser,
) -> list[_Parsed]:
    """Parse a fetched batch. A document whose bytes hash as before is not parsed again; one that
    cannot be parsed gets a failed/skipped outcome with its reason."""
    results = []
    for doc, data in zip(docs, fetched):
        previous = ledger.get(doc.source_id)
        if isinstance(data, DocumentOutcome):
            results.append(_Parsed(doc, None, data, previous))
            continue
        status = "updated" if previous and previous.status != "pending" else "indexed"
        content_hash = SourceDocument.content_hash(data)
        if previous and previous.status == "indexed" and previous.content_hash == content_hash:
            outcome = DocumentOutcome(doc.source_id, doc.uri, "unchanged", chunks=previous.chunks)
            results.append(_Parsed(doc, None, outcome, previous, content_hash))
            continue
        try:
            document = parser.run(doc, data)
        except ParseError as exc:
            outcome = DocumentOutcome(doc.source_id, doc.uri, exc.status, reason=exc.reason, detail=exc.detail)
            results.append(_Parsed(doc, None, outcome, previous, content_hash))
            continue
        results.append(_Parsed(doc, document, DocumentOutcome(doc.source_id, doc.uri, status), previous, content_hash))
    return results


@dataclass
class _Embedded:
    parsed: list[_Parsed]
    nodes: list[list[TextNode]]  # per parsed document; empty for those with nothing to index
    vectors: np.ndarray  # (total nodes, dim) float32, in node order
    sparse: list[SparseVector]  # BM25 term weights, in node order


@task(name="embed-documents", cache_policy=NO_CACHE)
def embed_documents(
    parsed: list[_Parsed], chunker: MarkdownChunker, embedder: DenseEmbedder, sparse_embedder: Bm25Embedder,
    progress: Progress | None,
) -> _Embedded:
    """Chunk the parsed documents and embed the chunks, dense in slices so progress can be reported,
    and sparse (BM25 term weights)."""
    nodes = []
    for item in parsed:
        nodes.append(chunker.run(item.document) if item.document is not None else [])
        if item.document is not None:
            item.outcome.chunks = len(nodes[-1])
    texts = [node.get_content() for doc_nodes in nodes for node in doc_nodes]
    vectors = []
    step = max(embedder.batch_size * 4, 1)
    for start in range(0, len(texts), step):
        vectors.append(embedder.embed(texts[start : start + step]))
        if progress:
            progress("chunks", len(vectors[-1]))
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, embedder.dimension), dtype=np.float32)
    return _Embedded(parsed, nodes, matrix, sparse_embedder.embed(texts))


@task(name="upsert-chunks", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def upsert_chunks(index: VectorIndex, batch: _Embedded) -> None:
    """Write a batch to the index, in an order a crash at any point cannot corrupt:

    1. a ``pending`` ledger entry for each new document, so its points are never untracked;
    2. the chunks of every indexed document (deterministic ids: a retry overwrites);
    3. per document, its stale points: chunks beyond its new count, or all of them if it now fails;
    4. the ledger entries, last. Until then the ledger shows the old version and a re-run redoes it.
    """
    items = list(zip(batch.parsed, batch.nodes))
    new = [item for item, _ in items if item.previous is None and item.document is not None]
    index.put_ledger([
        LedgerEntry(source_id=i.doc.source_id, source=i.doc.source, version="", content_hash="", chunks=0,
                    status="pending", uri=i.doc.uri)
        for i in new
    ])
    index.upsert([node for _, doc_nodes in items for node in doc_nodes], batch.vectors, batch.sparse)
    entries = []
    for item, doc_nodes in items:
        outcome = item.outcome
        if outcome.status == "unchanged":  # new version, same bytes: only the version moves on
            entries.append(replace(item.previous, version=item.doc.version, updated_at=now_iso()))
            continue
        indexed = outcome.status in ("indexed", "updated")
        if indexed and item.previous is not None:
            index.delete_chunks_from(item.doc.source_id, len(doc_nodes))
        elif not indexed and item.previous is not None:
            index.delete_document(item.doc.source_id)  # failed or skipped now: its old content goes
        entries.append(LedgerEntry(
            source_id=item.doc.source_id, source=item.doc.source, version=item.doc.version,
            content_hash=item.content_hash, chunks=len(doc_nodes) if indexed else 0,
            status="indexed" if indexed else outcome.status, uri=item.doc.uri,
            reason=outcome.reason, detail=outcome.detail,
        ))
    index.put_ledger(entries)


@task(name="delete-documents", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def delete_documents(index: VectorIndex, gone: Sequence[LedgerEntry]) -> None:
    """Remove documents no longer in the source: their chunks, then their ledger entries."""
    for entry in gone:
        index.delete_document(entry.source_id)
    index.delete_ledger([entry.source_id for entry in gone])


def _batches(items: Sequence[SourceDocument], size: int) -> Iterator[Sequence[SourceDocument]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _in_process_runner() -> bool:
    """Whether submitted tasks run in this process (threads), so they can call back with progress."""
    context = FlowRunContext.get()
    return context is None or isinstance(context.task_runner, ThreadPoolTaskRunner)


def ingest_source(
    source: SourceSettings,
    settings: Settings,
    index: VectorIndex,
    embedder: DenseEmbedder,
    parser: DocumentParser,
    progress: Progress | None = None,
    retry_failed: bool = False,
) -> IngestReport:
    """Sync one source into ``index``; returns its report. Called by the ``ingest`` flow.

    Fetch, parse, chunk and embed are submitted to the flow's task runner (threads in this process
    by default, Dask workers for scale-out), ``ingest.batches_in_flight`` batches at a time so the next
    batch parses while this one embeds; the index is written here, in the flow's process, the one
    writer an embedded shard allows.
    """
    started_at, started = now_iso(), time.perf_counter()
    report = IngestReport(source=source.name)
    chunker = build_chunker(settings, embedder)
    sparse_embedder = build_sparse_embedder(settings)

    docs = list_documents(source)
    ledger = index.ledger(source.name)
    listed = {doc.source_id for doc in docs}
    gone = [entry for sid, entry in ledger.items() if sid not in listed]
    todo = []
    for doc in docs:  # an unchanged version costs no fetch, no parse, no embedding
        known = ledger.get(doc.source_id)
        if known and known.version == doc.version and not (retry_failed and known.status == "failed"):
            status = known.status if known.status in ("failed", "skipped") else "unchanged"
            detail = f"not retried: unchanged since {known.updated_at}" if status == "failed" else known.detail
            report.outcomes.append(DocumentOutcome(doc.source_id, doc.uri, status, chunks=known.chunks,
                                                   reason=known.reason, detail=detail))
        else:
            todo.append(doc)
    if progress:
        progress("documents", len(docs) + len(gone))
        progress("document", len(report.outcomes))

    local = _in_process_runner()
    pending: deque = deque()

    def submit(batch: Sequence[SourceDocument]) -> None:
        fetched = fetch_documents.submit(batch)
        parsed = parse_documents.submit(batch, fetched, {d.source_id: ledger[d.source_id] for d in batch if d.source_id in ledger}, parser)
        pending.append((batch, embed_documents.submit(parsed, chunker, embedder, sparse_embedder, progress if local else None)))

    batches = _batches(todo, settings.ingest.batch_documents)
    for batch in itertools.islice(batches, settings.ingest.batches_in_flight):
        submit(batch)
    while pending:
        batch, future = pending.popleft()
        embedded = future.result()
        for more in itertools.islice(batches, 1):
            submit(more)
        upsert_chunks(index, embedded)
        report.outcomes += [item.outcome for item in embedded.parsed]
        report.chunks_embedded += len(embedded.vectors)
        if progress:
            if not local:
                progress("chunks", len(embedded.vectors))
            progress("document", len(batch))

    delete_documents(index, gone)
    report.outcomes += [DocumentOutcome(e.source_id, e.uri, "deleted", chunks=e.chunks) for e in gone]
    if progress:
        progress("document", len(gone))
    report.seconds = time.perf_counter() - started
    index.record_run(RunRecord(source=source.name, started_at=started_at, finished_at=now_iso(),
                               seconds=round(report.seconds, 3), counts=report.counts(),
                               chunks_embedded=report.chunks_embedded))
    return report


@flow(name="ingest", validate_parameters=False)
def ingest(
    source: str | None = None,
    path: str | None = None,
    config_file: str | None = None,
    settings: Settings | None = None,
    resources: Resources | None = None,
    retry_failed: bool = False,
) -> list[IngestReport]:
    """Ingest the configured sources (or the one named ``source``, or the folder ``path`` as an ad-hoc
    source called after the folder). Returns one IngestReport per source.

    A document that failed before and has not changed is not parsed again (its failure is reported
    again, "not retried") unless ``retry_failed``.

    ``resources`` carries what the calling process already holds (an embedder, an open index, a
    progress callback); what it lacks is built from settings, and an index built here is closed at the
    end. Raises KeyError for an unknown source name, FileNotFoundError for a missing folder and
    VectorIndexError when the index cannot be opened.
    """
    settings = settings or load_settings(config_file)
    resources = resources or Resources()
    sources = _sources_to_ingest(settings, source, path)
    embedder = resources.embedder or build_embedder(settings)
    index = resources.index or build_index(settings, embedder.dimension)
    parser = build_parser(settings)
    logger = get_run_logger()
    try:
        reports = []
        for src in sources:
            report = ingest_source(src, settings, index, embedder, parser, resources.progress, retry_failed)
            logger.info("source %s: %s, %d chunks embedded in %.1f s", src.name, report.counts(),
                        report.chunks_embedded, report.seconds)
            reports.append(report)
        publish_report(reports)
        return reports
    finally:
        parser.close()
        if resources.index is None:
            index.close()


#: the columns of the run's artifact table, one row per source
REPORT_COLUMNS = ("indexed", "updated", "deleted", "unchanged", "skipped", "failed")


def publish_report(reports: Sequence[IngestReport]) -> None:
    """Publish the run's Prefect artifact ``ingest-report``: per source, documents added (``indexed``),
    updated, deleted, unchanged, skipped and failed, chunks embedded and seconds taken. Shown on the
    flow run's page in the Prefect UI; kept with the run in the Prefect API."""
    rows = []
    for report in reports:
        counts = report.counts()
        rows.append({"source": report.source, **{c: counts.get(c, 0) for c in REPORT_COLUMNS},
                     "chunks_embedded": report.chunks_embedded, "seconds": round(report.seconds, 1)})
    problems = [f"{o.source_id}: {o.status}: {o.reason}" for r in reports for o in r.problems() if o.status == "failed"]
    description = "Documents per source by outcome." + (f" Failed: {'; '.join(problems[:20])}" if problems else "")
    create_table_artifact(rows, key="ingest-report", description=description[:5000])


def ingest_with_runner(settings: Settings) -> Flow:
    """The ``ingest`` flow with the task runner ``settings.ingest`` asks for: threads (the flow as it
    is), or a ``prefect_dask.DaskTaskRunner`` on ``dask_address`` or on a local cluster of
    ``dask_workers`` single-threaded worker processes. Raises ImportError naming the extra if
    prefect-dask is missing."""
    options = settings.ingest
    if options.task_runner == "threads":
        return ingest
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # pragma: no cover - the dask extra is in the test extra
        raise ImportError("ingest.task_runner: dask needs prefect-dask: pip install 'enclave[dask]'") from exc
    if options.dask_address:
        runner = DaskTaskRunner(address=options.dask_address)
    else:
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": options.dask_workers, "threads_per_worker": 1,
                                                "processes": True, "dashboard_address": None})
    return ingest.with_options(task_runner=runner)


def _sources_to_ingest(settings: Settings, source: str | None, path: str | None) -> list[SourceSettings]:
    if path is not None:
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"{path} is not a folder")
        name = "".join(c if c.isalnum() or c in "_.-" else "-" for c in folder.resolve().name) or "files"
        existing = [s for s in settings.sources if Path(s.path).resolve() == folder.resolve()]
        return existing or [SourceSettings(name=name, path=folder)]
    if source is not None:
        return [settings.source(source)]
    if not settings.sources:
        raise KeyError("no sources configured: give a folder (enclave ingest PATH) or add sources to enclave.yaml")
    return list(settings.sources)
