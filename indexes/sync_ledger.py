"""The sync ledger: what the index knows of each source document, and the record of ingest runs.

It lives in the index's own backend (stores ``ledger`` and ``runs``), so it survives restarts, moves
with the index and scales with it. The ingest compares each listed document's version with its entry:
an unchanged version costs no fetch, no parse and no embedding.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from enclave.contracts import DocumentStatus
from enclave.indexes.index_backend import IndexBackend, Point, Store, all_of, match, now_iso

LEDGER_NAMESPACE = uuid.UUID("0c6f0d55-3f0e-5a43-b9a2-8d1bd4b1e6a2")
#: The ledger point (and its payload key) that holds the index's manifest.
MANIFEST = "manifest"


@dataclass
class LedgerEntry:
    """What the index knows of one source document.

    ``status`` is a [DocumentStatus][enclave.contracts.DocumentStatus]: ``pending`` is written before a
    new document's first points, so a crash before its final entry still leaves a record of them (a
    pending entry has no version, so the next run redoes the document, or deletes it if the source no
    longer has it). ``reason`` is a short category for skipped and failed ones (``encrypted``,
    ``empty``...), ``detail`` the underlying message; ``chunks`` the number of points the document has
    in the index; ``updated_at`` ISO 8601 UTC. ``groups`` and ``classification`` are the ACL and label
    its chunks carry, so a sync sees a permission change that left the version alone (None: written
    before Enclave kept them, treated as changed).
    """

    doc_id: str
    source: str
    version: str
    content_hash: str
    chunks: int
    status: DocumentStatus
    uri: str = ""
    reason: str = ""
    detail: str = ""
    updated_at: str = field(default_factory=now_iso)
    groups: list[str] | None = None
    classification: str | None = None

    def same_acl(self, groups: Sequence[str], classification: str) -> bool:
        """Whether the chunks already carry ``groups`` (in any order) and ``classification``."""
        return self.groups is not None and sorted(self.groups) == sorted(groups) and \
            self.classification == str(classification)

    @property
    def point_id(self) -> str:
        return ledger_point_id(self.doc_id)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> LedgerEntry:
        """An entry as stored (entries written before Enclave named it ``doc_id`` call it ``source_id``)."""
        values = {k: payload[k] for k in cls.__dataclass_fields__ if k in payload}
        values.setdefault("doc_id", payload.get("source_id", ""))
        values["status"] = DocumentStatus(values["status"])
        return cls(**values)


def ledger_point_id(doc_id: str) -> str:
    """The ledger point id of ``doc_id`` (UUIDv5)."""
    return str(uuid.uuid5(LEDGER_NAMESPACE, doc_id))


@dataclass
class RunRecord:
    """One ingest run of one source. ``counts``: documents by outcome (indexed, updated, deleted,
    unchanged, skipped, failed); ``started_at``/``finished_at`` ISO 8601 UTC; ``seconds`` wall time."""

    source: str
    started_at: str
    finished_at: str
    seconds: float
    counts: dict[str, int]
    chunks_embedded: int = 0

    @property
    def point_id(self) -> str:
        return str(uuid.uuid5(LEDGER_NAMESPACE, f"run:{self.source}:{self.started_at}"))


@dataclass
class SourceSummary:
    """One source as ``enclave status`` shows it: documents in the ledger by status, chunk points in
    the index, the last run (None: never), the failed and the skipped documents (by reason, then doc
    id), and the indexed ones with a note on what was not read (``noted``: a page OCR found no text on)."""

    source: str
    documents: int
    by_status: dict[DocumentStatus, int]
    chunks: int
    last_run: RunRecord | None
    failed: list[LedgerEntry]
    skipped: list[LedgerEntry] = field(default_factory=list)
    noted: list[LedgerEntry] = field(default_factory=list)

    def failures_by_reason(self) -> dict[str, int]:
        """Failed documents counted by reason, most common first."""
        return dict(Counter(e.reason for e in self.failed).most_common())

    def skips_by_reason(self) -> dict[str, int]:
        """Skipped documents counted by reason, most common first."""
        return dict(Counter(e.reason for e in self.skipped).most_common())


class SyncLedger:
    """The per-document ledger and the run records of an index.

    Usage::

        ledger = SyncLedger(backend)
        ledger.put([LedgerEntry("hr:leave.md", "hr", "1700-2048", "ab12...", chunks=7, status=DocumentStatus.INDEXED)])
        ledger.entries("hr")                  # {doc_id: LedgerEntry}
        ledger.record_run(RunRecord(...)); ledger.runs("hr")   # newest first
        for source in ledger.summary(["hr"]):  # what `enclave status` renders
            print(source.source, source.by_status, source.chunks, source.last_run)

    A view on an [IndexBackend][enclave.indexes.IndexBackend]; whoever opened the backend closes it.
    """

    def __init__(self, backend: IndexBackend) -> None:
        self.backend = backend

    def entries(self, source: str | None = None) -> dict[str, LedgerEntry]:
        """The ledger entries of ``source`` (all sources if None), by doc id."""
        selector = all_of(match("source", source)) if source is not None else None
        return {entry.doc_id: entry for entry in
                (LedgerEntry.from_payload(payload) for _, payload in self.backend.scroll(Store.LEDGER, selector)
                 if "state_of" not in payload and MANIFEST not in payload)}

    def put(self, entries: Sequence[LedgerEntry]) -> None:
        """Insert or replace ledger entries (keyed by doc id)."""
        if entries:
            self.backend.upsert(Store.LEDGER, [Point(e.point_id, _payload(e)) for e in entries])

    def connector_state(self, source: str) -> dict[str, Any]:
        """What ``source``'s connector kept from its last successful sync ({} if nothing)."""
        for _, payload in self.backend.scroll(Store.LEDGER, all_of(match("state_of", source))):
            return payload.get("state", {})
        return {}

    def save_connector_state(self, source: str, state: dict[str, Any]) -> None:
        """Keep ``source``'s connector state (JSON-able) for its next sync."""
        self.backend.upsert(Store.LEDGER, [Point(str(uuid.uuid5(LEDGER_NAMESPACE, f"state:{source}")),
                                                 {"state_of": source, "state": state})])

    def manifest(self) -> dict[str, Any] | None:
        """What shaped this index's stored vectors, as ``save_manifest``
        kept it (None: an index built before Enclave kept one, or an empty one)."""
        for _, payload in self.backend.scroll(Store.LEDGER, all_of(match("point_kind", MANIFEST))):
            return payload.get(MANIFEST)
        return None

    def save_manifest(self, manifest: dict[str, Any]) -> None:
        """Keep ``manifest`` (JSON-able: the embedder, chunker and BM25 settings the vectors were made with)."""
        self.backend.upsert(Store.LEDGER, [Point(str(uuid.uuid5(LEDGER_NAMESPACE, MANIFEST)),
                                                 {"point_kind": MANIFEST, MANIFEST: manifest})])

    def forget(self, doc_ids: Sequence[str]) -> None:
        """Remove the ledger entries of ``doc_ids``."""
        if doc_ids:
            self.backend.delete_ids(Store.LEDGER, [ledger_point_id(d) for d in doc_ids])

    def record_run(self, run: RunRecord) -> None:
        """Keep the record of one ingest run."""
        self.backend.upsert(Store.RUNS, [Point(run.point_id, asdict(run))])

    def runs(self, source: str | None = None) -> list[RunRecord]:
        """Recorded ingest runs of ``source`` (all sources if None), newest first."""
        selector = all_of(match("source", source)) if source is not None else None
        runs = [RunRecord(**{k: p[k] for k in RunRecord.__dataclass_fields__ if k in p})
                for _, p in self.backend.scroll(Store.RUNS, selector)]
        return sorted(runs, key=lambda r: r.started_at, reverse=True)

    def summary(self, sources: Sequence[str] = (), only: str | None = None) -> list[SourceSummary]:
        """Per source: ``sources`` in that order (configured ones, shown even before their first run),
        then any other source the ledger holds, sorted; ``only`` keeps one source. Counts chunk points
        in the index itself, so a document half-written by a crashed run shows."""
        entries = self.entries(only)
        runs = self.runs(only)
        names = [s for s in sources if only in (None, s)]
        names += sorted({e.source for e in entries.values()} - set(names))
        summaries = []
        for name in names:
            mine = [e for e in entries.values() if e.source == name]
            failed, skipped = (sorted((e for e in mine if e.status == status), key=lambda e: (e.reason, e.doc_id))
                               for status in (DocumentStatus.FAILED, DocumentStatus.SKIPPED))
            noted = sorted((e for e in mine if e.status == DocumentStatus.INDEXED and e.detail), key=lambda e: e.doc_id)
            summaries.append(SourceSummary(
                source=name, documents=len(mine), by_status=dict(Counter(e.status for e in mine)),
                chunks=self.backend.count(Store.CHUNKS, all_of(match("source", name))),
                last_run=next((r for r in runs if r.source == name), None), failed=failed, skipped=skipped, noted=noted,
            ))
        return summaries


def _payload(entry: LedgerEntry) -> dict[str, Any]:
    payload = asdict(entry)
    payload["status"] = str(entry.status)
    return payload
