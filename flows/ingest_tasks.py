"""The ingest's steps as Prefect tasks, one per batch of documents: list, fetch, parse, embed, upsert, delete.

[IngestPipeline][enclave.flows.IngestPipeline] runs them: inside a flow run as task runs (retries as
declared here, shown in the Prefect UI, fetch/parse/embed on the flow's task runner), outside one as
plain calls of the same functions. Fetch, parse and embed take only data and their components (or,
on a Dask worker, the spec to build them from); upsert and delete run in the flow's process, the one
writer an embedded index allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from enclave.contracts import Chunk, Connector, DocumentStatus, SourceDocument, SyncOutcome
from enclave.flows.ingest_components import ComponentSpec, IngestComponents
from enclave.flows.ingest_report import DocumentOutcome
from enclave.flows.progress import ProgressEvent, ProgressKind
from enclave.indexes.chunk_store import ChunkStore
from enclave.indexes.index_backend import SparseVector, now_iso
from enclave.indexes.parser import ParseError
from enclave.indexes.sync_ledger import LedgerEntry, SyncLedger

if TYPE_CHECKING:
    from llama_index.core import Document

#: Fetch errors that may pass if tried again (a network share, an object store, a web server).
TRANSIENT_ERRORS = (TimeoutError, ConnectionError, InterruptedError, BlockingIOError)
#: Tries of one document's fetch while it fails with a transient error (waits 1 s, then 2 s).
FETCH_ATTEMPTS = 3
#: The reason recorded for a document whose fetch still failed transiently: the next sync tries it again
#: whatever its version (other failures wait for a new version, or ``--retry-failed``).
UNAVAILABLE = "unavailable"


@dataclass
class ParsedDocument:
    """A fetched document after parsing: ``document`` is None when there is nothing to index (see
    ``outcome``); ``previous`` its ledger entry before this run; ``content_hash`` of its bytes."""

    doc: SourceDocument
    document: Document | None
    outcome: DocumentOutcome
    previous: LedgerEntry | None
    content_hash: str = ""


@dataclass
class EmbeddedBatch:
    """A batch ready to write: per parsed document its chunks (empty for those with nothing to index),
    the dense vectors (total chunks, dim) float32 and BM25 vectors of all chunks, in chunk order."""

    parsed: list[ParsedDocument]
    chunks: list[list[Chunk]]
    vectors: np.ndarray
    sparse: list[SparseVector]


@task(name="list-documents", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def list_documents(connector: Connector) -> list[SourceDocument]:
    """The source's documents (identity, version, ACL; no content). A failing listing raises: nothing
    is deleted on its account."""
    return list(connector.list_documents())


@task(name="fetch-documents", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def fetch_documents(connector: Connector, docs: Sequence[SourceDocument]) -> list[bytes | DocumentOutcome]:
    """The bytes of each document, or a failed outcome for one that cannot be read: reason ``unreadable``
    (missing, permission denied) or ``unavailable`` (a timeout, a refused or reset connection, an outage
    of the source, still so after ``FETCH_ATTEMPTS`` tries), so one document cannot stop the run."""
    fetched: list[bytes | DocumentOutcome] = []
    for doc in docs:
        try:
            for attempt in Retrying(retry=retry_if_exception_type(TRANSIENT_ERRORS), reraise=True,
                                    stop=stop_after_attempt(FETCH_ATTEMPTS), wait=wait_exponential(multiplier=1, max=2)):
                with attempt:
                    data = connector.fetch(doc)
            fetched.append(data)
        except TRANSIENT_ERRORS as exc:
            fetched.append(DocumentOutcome(doc.doc_id, doc.uri, SyncOutcome.FAILED, reason=UNAVAILABLE,
                                           detail=f"{type(exc).__name__}: {exc}"))
        except OSError as exc:
            fetched.append(DocumentOutcome(doc.doc_id, doc.uri, SyncOutcome.FAILED, reason="unreadable", detail=str(exc)))
    return fetched


@task(name="parse-documents", cache_policy=NO_CACHE)
def parse_documents(docs: Sequence[SourceDocument], fetched: Sequence[bytes | DocumentOutcome],
                    known: dict[str, LedgerEntry], components: IngestComponents | ComponentSpec) -> list[ParsedDocument]:
    """Parse a fetched batch. A document whose bytes hash as before is not parsed again; one that
    cannot be parsed gets a failed or skipped outcome with its reason."""
    parser = IngestComponents.resolve(components).parser
    results = []
    for doc, data in zip(docs, fetched):
        previous = known.get(doc.doc_id)
        if isinstance(data, DocumentOutcome):
            results.append(ParsedDocument(doc, None, data, previous))
            continue
        status = SyncOutcome.UPDATED if previous and previous.status != DocumentStatus.PENDING else SyncOutcome.INDEXED
        content_hash = SourceDocument.content_hash(data)
        if previous and previous.status == DocumentStatus.INDEXED and previous.content_hash == content_hash:
            outcome = DocumentOutcome(doc.doc_id, doc.uri, SyncOutcome.UNCHANGED, chunks=previous.chunks)
            results.append(ParsedDocument(doc, None, outcome, previous, content_hash))
            continue
        try:
            document = parser.run(doc, data)
        except ParseError as exc:
            outcome = DocumentOutcome(doc.doc_id, doc.uri, SyncOutcome(exc.status), reason=exc.reason, detail=exc.detail)
            results.append(ParsedDocument(doc, None, outcome, previous, content_hash))
            continue
        notes = "; ".join(document.metadata.get("parse_notes", ()))  # what was not read: a page OCR found no text on
        results.append(ParsedDocument(doc, document, DocumentOutcome(doc.doc_id, doc.uri, status, detail=notes),
                                      previous, content_hash))
    return results


@task(name="embed-documents", cache_policy=NO_CACHE)
def embed_documents(parsed: list[ParsedDocument], components: IngestComponents | ComponentSpec) -> EmbeddedBatch:
    """Chunk the parsed documents and embed the chunks: dense in slices of four model batches (each
    reported as progress where there is a callback), and sparse (BM25 term weights).

    One document that cannot be chunked or embedded fails alone, recorded with reason ``chunking
    failed`` or ``embedding failed`` and the exception in ``detail``; the others go on. When the batch's
    embedding raises, a one-word probe is embedded: if that fails too, the embedder is at fault and the
    error is raised (failing every document would delete their old chunks); otherwise each document is
    embedded alone to find the one at fault. A batch with nothing to chunk (its documents unchanged, failed
    or skipped) loads no model: the chunker and the model load with the first document to chunk."""
    parts = IngestComponents.resolve(components)
    if any(item.document is not None for item in parsed):
        _ = parts.chunker  # built here (the model loads), not in one document's try: a model that cannot load fails the batch
    chunks = [_chunk(item, parts) for item in parsed]
    source = parsed[0].doc.source if parsed else ""
    texts = [chunk.embedding_text for doc_chunks in chunks for chunk in doc_chunks]
    try:
        matrix, sparse = _embed(texts, parts, source)
    except Exception:
        _embed(["probe"], parts, None)  # raises when the embedder itself is broken: the batch fails as a whole
        matrix, sparse = _embed_each(parsed, chunks, parts)
    return EmbeddedBatch(parsed, chunks, matrix, sparse)


def _fail(item: ParsedDocument, reason: str, exc: Exception) -> None:
    item.document = None
    item.outcome = DocumentOutcome(item.doc.doc_id, item.doc.uri, SyncOutcome.FAILED, reason=reason,
                                   detail=f"{type(exc).__name__}: {exc}"[:500])


def _chunk(item: ParsedDocument, parts: IngestComponents) -> list[Chunk]:
    """``item``'s chunks; [] when there is nothing to index or chunking fails (then ``item`` is failed)."""
    if item.document is None:
        return []
    try:
        chunks = parts.chunker.run(item.document)
    except Exception as exc:  # one document's chunking error must not fail the run
        _fail(item, "chunking failed", exc)
        return []
    item.outcome.chunks = len(chunks)
    return chunks


def _embed(texts: list[str], parts: IngestComponents, source: str | None) -> tuple[np.ndarray, list[SparseVector]]:
    """(len(texts), dimension) float32 dense vectors and the BM25 vectors of ``texts``; progress is
    reported for ``source`` (not for None)."""
    vectors = []
    step = max(parts.embedder.batch_size * 4, 1)
    for start in range(0, len(texts), step):
        vectors.append(parts.embedder.embed(texts[start : start + step]))
        if parts.progress and source is not None:
            parts.progress(ProgressEvent(ProgressKind.CHUNKS, source, len(vectors[-1])))
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, parts.embedder.dimension), dtype=np.float32)
    return matrix, parts.sparse_embedder.embed(texts)


def _embed_each(parsed: list[ParsedDocument], chunks: list[list[Chunk]],
                parts: IngestComponents) -> tuple[np.ndarray, list[SparseVector]]:
    """Embed document by document; a document whose embedding raises is failed and its chunks dropped
    (``chunks`` is changed in place). Returns the vectors of the chunks left, in order."""
    matrices, sparse = [], []
    for number, (item, doc_chunks) in enumerate(zip(parsed, chunks)):
        if not doc_chunks:
            continue
        try:
            matrix, terms = _embed([chunk.embedding_text for chunk in doc_chunks], parts, None)  # progress is not reported twice
        except Exception as exc:  # this document's error, not the run's
            _fail(item, "embedding failed", exc)
            chunks[number] = []
            continue
        matrices.append(matrix)
        sparse.extend(terms)
    matrix = np.concatenate(matrices) if matrices else np.zeros((0, parts.embedder.dimension), dtype=np.float32)
    return matrix, sparse


@task(name="upsert-chunks", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def upsert_chunks(store: ChunkStore, ledger: SyncLedger, batch: EmbeddedBatch) -> None:
    """Write a batch to the index, in an order a crash at any point cannot corrupt:

    1. a ``pending`` ledger entry for each new document, so its points are never untracked;
    2. the chunks of every indexed document (deterministic ids: a retry overwrites);
    3. per document, its stale points: chunks beyond its new count, or all of them if it now fails;
    4. the ledger entries, last. Until then the ledger shows the old version and a re-run redoes it.
    """
    items = list(zip(batch.parsed, batch.chunks))
    ledger.put([
        LedgerEntry(doc_id=i.doc.doc_id, source=i.doc.source, version="", content_hash="", chunks=0,
                    status=DocumentStatus.PENDING, uri=i.doc.uri)
        for i, _ in items if i.previous is None and i.document is not None
    ])
    store.upsert([chunk for _, doc_chunks in items for chunk in doc_chunks], batch.vectors, batch.sparse)
    entries = []
    for item, doc_chunks in items:
        outcome = item.outcome
        acl = {"groups": list(item.doc.groups), "classification": str(item.doc.classification)}
        if outcome.status == SyncOutcome.UNCHANGED:  # new version, same bytes: only the version (and ACL) move on
            if not item.previous.same_acl(item.doc.groups, item.doc.classification):
                store.set_acl(item.doc.doc_id, item.doc.groups, item.doc.classification)
            entries.append(replace(item.previous, version=item.doc.version, updated_at=now_iso(), **acl))
            continue
        indexed = outcome.status in (SyncOutcome.INDEXED, SyncOutcome.UPDATED)
        if indexed and item.previous is not None:
            store.delete_chunks_from(item.doc.doc_id, len(doc_chunks))
        elif not indexed and item.previous is not None:
            store.delete_document(item.doc.doc_id)  # failed or skipped now: its old content goes
        entries.append(LedgerEntry(
            doc_id=item.doc.doc_id, source=item.doc.source, version=item.doc.version,
            content_hash=item.content_hash, chunks=len(doc_chunks) if indexed else 0,
            status=DocumentStatus.INDEXED if indexed else DocumentStatus(outcome.status), uri=item.doc.uri,
            reason=outcome.reason, detail=outcome.detail, **acl,
        ))
    ledger.put(entries)


@task(name="update-permissions", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def update_permissions(store: ChunkStore, ledger: SyncLedger, changed: Sequence[tuple[SourceDocument, LedgerEntry]]) -> None:
    """Documents whose content is unchanged but whose groups or classification changed: rewrite the ACL
    in their chunks' payload, then their ledger entries (no fetch, no parse, no embedding). A crash between
    the two leaves the old ACL in the ledger, so the next run does it again."""
    for doc, _ in changed:
        store.set_acl(doc.doc_id, doc.groups, doc.classification)
    ledger.put([replace(entry, groups=list(doc.groups), classification=str(doc.classification), updated_at=now_iso())
                for doc, entry in changed])


@task(name="delete-documents", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def delete_documents(store: ChunkStore, ledger: SyncLedger, gone: Sequence[LedgerEntry]) -> None:
    """Remove documents no longer in the source: their chunks, then their ledger entries."""
    for entry in gone:
        store.delete_document(entry.doc_id)
    ledger.forget([entry.doc_id for entry in gone])
