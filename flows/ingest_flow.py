"""The ``ingest`` and ``ingest_source`` flows: sync sources into the index, as Prefect flow runs.

Both take only JSON-able parameters (source names, a folder path, the settings file), so a deployment
can schedule them (``prefect.yaml``: ``ingest-<source>``) and a worker on another host can run them;
both wrap an [IngestPipeline][enclave.flows.IngestPipeline] and publish the run's ``ingest-report``
artifact. Settings come from ``config_file`` (default ``$ENCLAVE_CONFIG`` or ``./enclave.yaml``) and the
``ENCLAVE_*`` environment of the process that runs the flow.

Scale-out: ``ingest_with_runner(settings)`` (or ``ingest.with_options(task_runner=DaskTaskRunner(...))``)
runs fetch, parse and embed on Dask workers.
"""

from __future__ import annotations

from pathlib import Path

from prefect import Flow, flow, get_run_logger

from enclave.contracts import SourceUnavailable
from enclave.flows.ingest_pipeline import IngestPipeline
from enclave.flows.ingest_report import IngestReport, publish_report
from enclave.flows.progress import current_progress
from enclave.settings import Settings, SourceSettings, load_settings


@flow(name="ingest")
def ingest(source: str | None = None, path: str | None = None, config_file: str | None = None,
           retry_failed: bool = False) -> list[IngestReport]:
    """Sync the configured sources (or the one named ``source``, or the folder ``path`` as an ad-hoc
    source named after the folder); returns one [IngestReport][enclave.flows.IngestReport] per source.

    A document that failed before and has not changed is not parsed again (its failure is reported
    again, "not retried") unless ``retry_failed``. A source that cannot be listed deletes nothing and
    the other sources still sync; the flow then raises [SourceUnavailable][enclave.contracts.SourceUnavailable]
    naming each such source (after publishing the others' report). Raises KeyError for an unknown source name,
    FileNotFoundError for a missing folder, SettingsError for bad settings and
    [IndexUnavailable][enclave.indexes.IndexUnavailable] when the index cannot be opened.
    """
    settings = load_settings(config_file)
    sources = sources_to_ingest(settings, source, path)
    reports, unavailable = [], []
    with IngestPipeline.from_settings(settings, progress=current_progress()) as pipeline:
        for src in sources:
            try:
                reports.append(pipeline.run(src, retry_failed=retry_failed))
            except SourceUnavailable as exc:  # that source deleted nothing; the others still sync
                get_run_logger().error("%s", exc)
                unavailable.append(str(exc))
    publish_report(reports)
    if unavailable:
        raise SourceUnavailable("; ".join(unavailable))
    return reports


@flow(name="ingest-source")
def ingest_source(source: str, config_file: str | None = None, retry_failed: bool = False) -> IngestReport:
    """Sync the configured source named ``source``: the building block for a flow of your own.

    Usage::

        @flow
        def morning_digest(config_file: str = "enclave.yaml"):
            ingest_source("handbook", config_file=config_file)     # a subflow run
            answer(["What changed in the travel policy?"], groups=["staff"], config_file=config_file)

    Raises as [ingest][enclave.flows.ingest] does.
    """
    settings = load_settings(config_file)
    with IngestPipeline.from_settings(settings, progress=current_progress()) as pipeline:
        report = pipeline.run(settings.source(source), retry_failed=retry_failed)
    publish_report([report])
    return report


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


def sources_to_ingest(settings: Settings, source: str | None = None, path: str | None = None) -> list[SourceSettings]:
    """The sources an ingest covers: the folder ``path`` (the configured source with that folder, else
    an ad-hoc one named after it), the source named ``source``, or every configured source. Raises
    FileNotFoundError for a missing folder, KeyError for an unknown name or when none is configured."""
    if path is not None:
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"{path} is not a folder")
        name = "".join(c if c.isalnum() or c in "_.-" else "-" for c in folder.resolve().name) or "files"
        existing = [s for s in settings.sources if s.path is not None and Path(s.path).resolve() == folder.resolve()]
        return existing or [SourceSettings(name=name, path=folder)]
    if source is not None:
        return [settings.source(source)]
    if not settings.sources:
        raise KeyError("no sources configured: give a folder (enclave ingest PATH) or add sources to enclave.yaml")
    return list(settings.sources)
