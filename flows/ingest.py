"""The ``ingest`` flow: list, parse, chunk, embed and upsert a source's documents, syncing the index.

Read top to bottom: the flow lists the source, compares each document's version with the ledger,
and sends only new or changed documents through parse → chunk → embed → upsert, one task per batch
of documents; the next batch parses (in the parser's own process) while the current one embeds. Documents gone from the source are deleted. Per document the order is: upsert the new
chunks, delete its stale chunks, then write its ledger entry, so a crash at any point leaves a state
the next run repairs (the ledger still shows the old version, and point ids are deterministic).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from llama_index.core import Document
from llama_index.core.schema import TextNode
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from connectors.document import SourceDocument
from enclave.settings import Settings, SourceSettings, load_settings
from flows.components import Resources, build_chunker, build_connector, build_embedder, build_index, build_parser
from indexes.chunker import MarkdownChunker
from indexes.embedder import DenseEmbedder
from indexes.parser import DocumentParser, ParseError
from indexes.vector_index import LedgerEntry, VectorIndex, now_iso

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


@task(name="parse-documents", cache_policy=NO_CACHE)
def parse_documents(
    docs: Sequence[SourceDocument], ledger: dict[str, LedgerEntry], parser: DocumentParser
) -> list[_Parsed]:
    """Fetch and parse a batch. A document whose bytes hash as before is not parsed again; one that
    cannot be fetched or parsed gets a failed/skipped outcome with its reason."""
    results = []
    for doc in docs:
        previous = ledger.get(doc.source_id)
        status = "updated" if previous else "indexed"
        try:
            data = doc.fetch()
        except OSError as exc:
            outcome = DocumentOutcome(doc.source_id, doc.uri, "failed", reason="unreadable", detail=str(exc))
            results.append(_Parsed(doc, None, outcome, previous))
            continue
        content_hash = SourceDocument.content_hash(data)
        if previous and previous.content_hash == content_hash:
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


@task(name="chunk-documents", cache_policy=NO_CACHE)
def chunk_documents(parsed: Sequence[_Parsed], chunker: MarkdownChunker) -> list[list[TextNode]]:
    """Chunks per parsed document (an empty list for those with nothing to index)."""
    nodes = []
    for item in parsed:
        nodes.append(chunker.run(item.document) if item.document is not None else [])
        if item.document is not None:
            item.outcome.chunks = len(nodes[-1])
    return nodes


@task(name="embed-chunks", cache_policy=NO_CACHE)
def embed_chunks(nodes: Sequence[TextNode], embedder: DenseEmbedder, progress: Progress | None) -> np.ndarray:
    """Dense vectors of the chunks, (len(nodes), dim) float32, embedded in slices to report progress."""
    vectors = []
    step = max(embedder.batch_size * 4, 1)
    for start in range(0, len(nodes), step):
        piece = nodes[start : start + step]
        vectors.append(embedder.embed([node.get_content() for node in piece]))
        if progress:
            progress("chunks", len(piece))
    return np.concatenate(vectors) if vectors else np.zeros((0, embedder.dimension), dtype=np.float32)


@task(name="upsert-chunks", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def upsert_chunks(
    index: VectorIndex, parsed: Sequence[_Parsed], nodes: Sequence[Sequence[TextNode]], vectors: np.ndarray
) -> None:
    """Per document: upsert its chunks, delete its stale ones, then record it in the ledger."""
    offset = 0
    for item, doc_nodes in zip(parsed, nodes):
        doc_vectors = vectors[offset : offset + len(doc_nodes)]
        offset += len(doc_nodes)
        outcome = item.outcome
        if outcome.status == "unchanged":  # new version, same bytes: only the version moves on
            index.put_ledger([replace(item.previous, version=item.doc.version, updated_at=now_iso())])
            continue
        if outcome.status in ("indexed", "updated"):
            index.upsert(doc_nodes, doc_vectors)
            if item.previous and item.previous.chunks > len(doc_nodes):
                index.delete_chunks_from(item.doc.source_id, len(doc_nodes))
        elif item.previous and item.previous.chunks:
            index.delete_document(item.doc.source_id)  # failed or skipped now: its old content goes
        indexed = outcome.status in ("indexed", "updated")
        index.put_ledger([
            LedgerEntry(
                source_id=item.doc.source_id, source=item.doc.source, version=item.doc.version,
                content_hash=item.content_hash, chunks=len(doc_nodes) if indexed else 0,
                status="indexed" if indexed else outcome.status, uri=item.doc.uri,
                reason=outcome.reason, detail=outcome.detail,
            )
        ])


@task(name="delete-documents", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def delete_documents(index: VectorIndex, gone: Sequence[LedgerEntry]) -> None:
    """Remove documents no longer in the source: their chunks, then their ledger entries."""
    for entry in gone:
        index.delete_document(entry.source_id)
    index.delete_ledger([entry.source_id for entry in gone])


def _batches(items: Sequence[SourceDocument], size: int) -> Iterator[Sequence[SourceDocument]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def ingest_source(
    source: SourceSettings,
    settings: Settings,
    index: VectorIndex,
    embedder: DenseEmbedder,
    parser: DocumentParser,
    progress: Progress | None = None,
) -> IngestReport:
    """Sync one source into ``index``; returns its report. Called by the ``ingest`` flow."""
    started = time.perf_counter()
    report = IngestReport(source=source.name)
    chunker = build_chunker(settings, embedder)

    docs = list_documents(source)
    ledger = index.ledger(source.name)
    listed = {doc.source_id for doc in docs}
    gone = [entry for sid, entry in ledger.items() if sid not in listed]
    todo = []
    for doc in docs:  # an unchanged version costs no fetch, no parse, no embedding
        known = ledger.get(doc.source_id)
        if known and known.version == doc.version:
            report.outcomes.append(DocumentOutcome(doc.source_id, doc.uri, "unchanged", chunks=known.chunks))
        else:
            todo.append(doc)
    if progress:
        progress("documents", len(docs) + len(gone))
        progress("document", len(report.outcomes))

    # parsing runs in the parser's own process: the next batch parses while this one embeds
    batches = list(_batches(todo, settings.ingest.batch_documents))
    upcoming = parse_documents.submit(batches[0], ledger, parser) if batches else None
    for number, batch in enumerate(batches):
        parsed = upcoming.result()
        if number + 1 < len(batches):
            upcoming = parse_documents.submit(batches[number + 1], ledger, parser)
        nodes = chunk_documents(parsed, chunker)
        flat = [node for doc_nodes in nodes for node in doc_nodes]
        vectors = embed_chunks(flat, embedder, progress)
        upsert_chunks(index, parsed, nodes, vectors)
        report.outcomes += [item.outcome for item in parsed]
        report.chunks_embedded += len(flat)
        if progress:
            progress("document", len(batch))

    delete_documents(index, gone)
    report.outcomes += [DocumentOutcome(e.source_id, e.uri, "deleted", chunks=e.chunks) for e in gone]
    if progress:
        progress("document", len(gone))
    report.seconds = time.perf_counter() - started
    return report


@flow(name="ingest", validate_parameters=False)
def ingest(
    source: str | None = None,
    path: str | None = None,
    config_file: str | None = None,
    settings: Settings | None = None,
    resources: Resources | None = None,
) -> list[IngestReport]:
    """Ingest the configured sources (or the one named ``source``, or the folder ``path`` as an ad-hoc
    source called after the folder). Returns one IngestReport per source.

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
            report = ingest_source(src, settings, index, embedder, parser, resources.progress)
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
