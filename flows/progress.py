"""Progress of an ingest, as typed events to a callback: how many documents there are, how many are done,
how many chunks are embedded.

A pipeline takes the callback directly (``IngestPipeline.from_settings(settings, progress=show)``). A
Prefect flow takes only JSON-able parameters, so a caller in the same process (the CLI's progress bar)
hands the callback to the flows it runs with [reporting_progress][enclave.flows.progress.reporting_progress].
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum


class ProgressKind(StrEnum):
    """What a [ProgressEvent][enclave.flows.ProgressEvent] counts: ``planned`` documents to look at (once
    per source, before the first is done: listed ones plus ledger entries gone from the source),
    ``documents`` done, ``chunks`` embedded."""

    PLANNED = "planned"
    DOCUMENTS = "documents"
    CHUNKS = "chunks"


@dataclass(frozen=True)
class ProgressEvent:
    """``amount`` of ``kind`` for the source named ``source``."""

    kind: ProgressKind
    source: str
    amount: int


#: A progress callback: called with each event, from the pipeline's thread or a task's thread; it must
#: be quick and must not raise.
ProgressCallback = Callable[[ProgressEvent], None]

_CURRENT: contextvars.ContextVar[ProgressCallback | None] = contextvars.ContextVar("enclave_progress", default=None)


@contextmanager
def reporting_progress(callback: ProgressCallback) -> Iterator[None]:
    """Within the block, the ingest and evaluate flows run in this process report to ``callback``.

    Usage::

        with reporting_progress(lambda event: print(event.kind, event.amount)):
            ingest(source="handbook")
    """
    token = _CURRENT.set(callback)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_progress() -> ProgressCallback | None:
    """The callback of the innermost [reporting_progress][enclave.flows.progress.reporting_progress] block, or None."""
    return _CURRENT.get()
