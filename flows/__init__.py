"""Prefect flows composing the stages, and the pipelines they wrap.

Usage::

    from enclave.flows import AnswerPipeline, IngestPipeline, answer, ingest, ingest_source

    with IngestPipeline.from_settings(settings) as pipeline:      # plain Python: no Prefect API needed
        pipeline.run("handbook")
    ingest(source="handbook", config_file="enclave.yaml")         # the same as a Prefect flow run

The flows (``ingest``, ``ingest_source``, ``reindex``, ``answer``, ``evaluate``) take only JSON-able parameters;
the pipelines take objects. ``components`` builds every component from settings. Names load on first
use.
"""

from typing import TYPE_CHECKING

from enclave.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from enclave.flows.answer_flow import answer
    from enclave.flows.answer_pipeline import Answered, AnswerEvent, AnswerPipeline, Retrieved, cited_numbers
    from enclave.flows.evaluate_flow import evaluate, load_dataset
    from enclave.flows.evaluation_report import EvaluationReport, ModeResult
    from enclave.flows.index_location import generations, index_path, open_index
    from enclave.flows.index_manifest import IndexOutdated
    from enclave.flows.ingest_components import ComponentSpec, IngestComponents
    from enclave.flows.ingest_flow import ingest, ingest_source, ingest_with_runner, sources_to_ingest
    from enclave.flows.ingest_pipeline import IngestPipeline, SyncPlan
    from enclave.flows.ingest_report import DocumentOutcome, IngestReport
    from enclave.flows.progress import ProgressCallback, ProgressEvent, ProgressKind, reporting_progress
    from enclave.flows.reindex_flow import ReindexRefused, ReindexReport, reindex

__all__ = ["AnswerEvent", "AnswerPipeline", "Answered", "ComponentSpec", "DocumentOutcome", "EvaluationReport",
    "IndexOutdated", "IngestComponents", "IngestPipeline", "IngestReport", "ModeResult", "ProgressCallback",
    "ProgressEvent", "ProgressKind", "ReindexRefused", "ReindexReport", "Retrieved", "SyncPlan", "answer",
    "cited_numbers", "evaluate", "generations", "index_path", "ingest", "ingest_source", "ingest_with_runner",
    "load_dataset", "open_index", "reindex", "reporting_progress", "sources_to_ingest"]
__getattr__, __dir__ = lazy_exports(globals(), {
    "enclave.flows.answer_flow": ["answer"],
    "enclave.flows.answer_pipeline": ["AnswerEvent", "AnswerPipeline", "Answered", "Retrieved", "cited_numbers"],
    "enclave.flows.evaluate_flow": ["evaluate", "load_dataset"],
    "enclave.flows.evaluation_report": ["EvaluationReport", "ModeResult"],
    "enclave.flows.index_location": ["generations", "index_path", "open_index"],
    "enclave.flows.index_manifest": ["IndexOutdated"],
    "enclave.flows.ingest_components": ["ComponentSpec", "IngestComponents"],
    "enclave.flows.ingest_flow": ["ingest", "ingest_source", "ingest_with_runner", "sources_to_ingest"],
    "enclave.flows.ingest_pipeline": ["IngestPipeline", "SyncPlan"],
    "enclave.flows.ingest_report": ["DocumentOutcome", "IngestReport"],
    "enclave.flows.progress": ["ProgressCallback", "ProgressEvent", "ProgressKind", "reporting_progress"],
    "enclave.flows.reindex_flow": ["ReindexRefused", "ReindexReport", "reindex"],
})
