"""What an ingest run did: an outcome per document, and the Prefect artifact that shows it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from enclave.contracts import SyncOutcome


@dataclass
class DocumentOutcome:
    """What a run did with one document: its [SyncOutcome][enclave.contracts.SyncOutcome], the chunks it
    has in the index, and for skipped and failed ones a short ``reason`` and the underlying ``detail``."""

    doc_id: str
    uri: str
    status: SyncOutcome
    chunks: int = 0
    reason: str = ""
    detail: str = ""


@dataclass
class IngestReport:
    """The result of ingesting one source: an outcome per document, chunks embedded, seconds taken.

    Usage::

        report = pipeline.run("handbook")
        report.counts()      # {"indexed": 200, "unchanged": 40, "failed": 2}
        report.reasons()     # {"failed: encrypted": 1, "failed: corrupt or unreadable": 1}
    """

    source: str
    outcomes: list[DocumentOutcome] = field(default_factory=list)
    chunks_embedded: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Documents by outcome, e.g. {"indexed": 200, "failed": 12, "skipped": 31}."""
        return dict(Counter(str(o.status) for o in self.outcomes))

    def problems(self) -> list[DocumentOutcome]:
        """Failed and skipped documents, each with its reason."""
        return [o for o in self.outcomes if o.status in (SyncOutcome.FAILED, SyncOutcome.SKIPPED)]

    def reasons(self) -> dict[str, int]:
        """Failed and skipped documents counted by ``status: reason``."""
        return dict(Counter(f"{o.status}: {o.reason}" for o in self.problems()))


#: The columns of the run's artifact table, one row per source.
REPORT_COLUMNS = tuple(str(s) for s in (SyncOutcome.INDEXED, SyncOutcome.UPDATED, SyncOutcome.ACL_UPDATED,
                                        SyncOutcome.DELETED, SyncOutcome.UNCHANGED, SyncOutcome.SKIPPED,
                                        SyncOutcome.FAILED))


def publish_report(reports: Sequence[IngestReport]) -> None:
    """Publish the flow run's Prefect artifact ``ingest-report``: per source, documents added (``indexed``),
    updated, with only their permissions updated (``acl_updated``), deleted, unchanged, skipped and failed,
    chunks embedded and seconds taken; failed documents and their reasons in its description. Shown on the
    flow run's page in the Prefect UI; kept with the run in the Prefect API; each source's line also goes
    to the run's log. Call it inside a flow run."""
    from prefect import get_run_logger
    from prefect.artifacts import create_table_artifact

    rows, logger = [], get_run_logger()
    for report in reports:
        logger.info("source %s: %s, %d chunks embedded in %.1f s", report.source, report.counts(),
                    report.chunks_embedded, report.seconds)
        counts = report.counts()
        rows.append({"source": report.source, **{c: counts.get(c, 0) for c in REPORT_COLUMNS},
                     "chunks_embedded": report.chunks_embedded, "seconds": round(report.seconds, 1)})
    problems = [f"{o.doc_id}: {o.status}: {o.reason}" for r in reports for o in r.problems()
                if o.status == SyncOutcome.FAILED]
    description = "Documents per source by outcome." + (f" Failed: {'; '.join(problems[:20])}" if problems else "")
    create_table_artifact(rows, key="ingest-report", description=description[:5000])
