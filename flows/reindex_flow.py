"""The ``reindex`` flow: rebuild the index with the current settings (a new embedder, chunk size or BM25
parameters) beside the live one, switch readers to it atomically, then drop the old one.

Read [reindex][enclave.flows.reindex_flow.reindex] top to bottom. Answers go on from the live generation
while the new one is built: ``enclave serve`` follows the switch (server/index_follower.py) and adopts
the new generation's embedder from its manifest. Documents that change during the build are caught by
the next ``enclave ingest``, which syncs the new generation like any other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prefect import flow, get_run_logger

from enclave.flows.components import build_embedder
from enclave.flows.index_location import generations, open_index
from enclave.flows.ingest_pipeline import IngestPipeline
from enclave.flows.ingest_report import IngestReport, publish_report
from enclave.flows.progress import current_progress
from enclave.indexes.index_backend import IndexMissing
from enclave.indexes.sync_ledger import SyncLedger
from enclave.settings import Settings, load_settings


class ReindexRefused(RuntimeError):
    """The re-index was not started, or its new generation was not switched to (the message says why);
    the live index is untouched."""


@dataclass
class ReindexReport:
    """What a re-index did: ``previous`` and ``live`` generation names (``previous`` None when there was
    no index), one [IngestReport][enclave.flows.IngestReport] per source, whether the previous generation
    was ``dropped`` (False: still open in a process after the grace period; delete it later with
    ``enclave reindex --drop-stale``), and ``seconds`` the whole run took."""

    previous: str | None
    live: str
    reports: list[IngestReport] = field(default_factory=list)
    dropped: bool = True
    seconds: float = 0.0


@flow(name="reindex")
def reindex(config_file: str | None = None, grace: float = 30.0, allow_dropping: bool = False) -> ReindexReport:
    """Rebuild the configured index from its sources with the current settings, without downtime.

    The configured sources are ingested into a new generation (``<collection>__<timestamp>``); only when
    every source listed does it become live, in one atomic switch (a Qdrant alias on a server, the
    ``<collection>.live`` file on Edge). The previous generation is dropped as soon as no process holds
    it, waiting at most ``grace`` seconds (on a server: after ``grace`` seconds). A source the live
    index holds but the settings no longer name refuses the re-index (its documents would vanish)
    unless ``allow_dropping``. Raises [ReindexRefused][enclave.flows.reindex_flow.ReindexRefused],
    [SourceUnavailable][enclave.contracts.SourceUnavailable] (the new generation is deleted, the live one
    untouched) and [IndexUnavailable][enclave.indexes.IndexUnavailable].
    """
    started = time.perf_counter()
    settings = load_settings(config_file)
    logger = get_run_logger()
    index_generations = generations(settings)
    indexed = _indexed_sources(settings)
    previous = None if indexed is None else index_generations.live()
    missing = sorted((indexed or set()) - {source.name for source in settings.sources})
    if missing and not allow_dropping:
        raise ReindexRefused(
            f"the live index holds sources the settings do not name ({', '.join(missing)}): a re-index rebuilds only "
            "configured sources, so their documents would be gone. Add them to the settings' sources, or pass "
            "--allow-dropping to leave them out")

    name = index_generations.new_name()
    logger.info("building generation %s beside %s", name, previous or "(none)")
    embedder = build_embedder(settings)
    index = index_generations.open(name, embedder.dimension)
    try:
        with IngestPipeline.from_settings(settings, index=index, embedder=embedder,
                                          progress=current_progress()) as pipeline:
            reports = [pipeline.run(source) for source in settings.sources]
    except BaseException:
        index.close()
        index_generations.drop(name)
        raise
    index.close()
    publish_report(reports)

    index_generations.switch(name)
    logger.info("switched readers to %s", name)
    dropped = True
    if previous is not None and previous != name:
        dropped = index_generations.drop(previous, wait=grace)
        if not dropped:
            logger.warning("generation %s is still open in another process; delete it later", previous)
    return ReindexReport(previous, name, reports, dropped, time.perf_counter() - started)


def drop_stale_generations(settings: Settings) -> list[str]:
    """Delete every generation of the configured collection that is not live and no process holds; returns
    their names (one a server process still holds stays)."""
    index_generations = generations(settings)
    live = index_generations.live()
    return [name for name in index_generations.names() if name != live and index_generations.drop(name)]


def _indexed_sources(settings: Settings) -> set[str] | None:
    """The sources the live index holds (one open of the index), or None when there is no index yet."""
    try:
        index = open_index(settings)
    except IndexMissing:
        return None
    try:
        return {entry.source for entry in SyncLedger(index).entries().values()}
    finally:
        index.close()
