"""The ``evaluate`` flow: how well retrieval finds the right documents, per retrieval mode.

Read top to bottom: load the dataset (a BEIR folder, or a QA file with the documents it is about),
ingest its documents into a collection of its own (``eval-<name>``, incremental like any ingest, so
a second run embeds nothing), judge QA questions that name no source by where their answer occurs,
run every query in each mode (dense, sparse, hybrid), score the document rankings (nDCG@10,
recall@10/100, MRR@10, hit@k; see [enclave.indexes.retrieval_metrics][enclave.indexes.retrieval_metrics])
and time each query. The report is a Prefect Markdown artifact (``evaluation-<name>``) and files: JSON,
Markdown and a PNG plot.

Relevance is judged per document: a query's chunk hits become a document ranking, each document at
its best chunk's rank.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from enclave.connectors.beir import (
    DatasetError,
    is_beir_dataset,
    read_qrels,
    read_queries,
)
from enclave.flows.components import build_retriever
from enclave.flows.evaluation_report import EvaluationReport, ModeResult
from enclave.flows.ingest_pipeline import IngestPipeline
from enclave.flows.progress import current_progress
from enclave.indexes.chunk_store import MODES, ChunkStore
from enclave.indexes.retrieval_metrics import METRICS, per_query, score_ranking
from enclave.indexes.retriever import Retriever
from enclave.settings import SourceSettings, load_settings

#: Documents ranked per query: enough for recall@100.
DEPTH = 100
#: Chunks fetched per query to fill DEPTH documents (a document can have several chunks).
CHUNKS_PER_QUERY = 2 * DEPTH
QA_SUFFIXES = (".yaml", ".yml", ".json", ".jsonl")


@dataclass
class EvalDataset:
    """Queries, judgements and the documents they are about.

    ``qrels``: query id → {doc id: relevance}; ``answers``: query id → answer text, for
    QA questions without a source document (judged after ingestion by
    [judge_by_answers][enclave.flows.evaluate_flow.judge_by_answers]).
    """

    name: str
    kind: str  # "beir" or "qa"
    source: SourceSettings
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    answers: dict[str, str] = field(default_factory=dict)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "dataset"


def load_dataset(path: str | Path, documents: str | Path | None = None, split: str = "test") -> EvalDataset:
    """A BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``), or a QA file.

    A QA file (YAML, JSON or JSONL) lists ``{question, answer | answer_contains, source?}``; ``source``
    is a document path relative to the documents folder. The folder is ``documents``, or the file's
    ``documents:`` key (relative to the file) when it is a mapping ``{documents, questions}``.
    Raises DatasetError naming what is missing or malformed.
    """
    root = Path(path)
    if root.is_dir():
        if not is_beir_dataset(root):
            raise DatasetError(f"{root} is not a BEIR dataset: it needs corpus.jsonl and queries.jsonl "
                               "(and qrels/<split>.tsv); a QA file is a .yaml, .json or .jsonl file")
        name = _slug(root.resolve().name)
        queries, qrels = read_queries(root), read_qrels(root, split)
        source = SourceSettings(name=name, kind="beir", path=root, classification="public")
        return EvalDataset(
            name, "beir", source, {q: t for q, t in queries.items() if q in qrels},
            {q: {f"{name}:{doc}": rel for doc, rel in judged.items()} for q, judged in qrels.items() if q in queries},
        )
    if not root.is_file() or root.suffix.lower() not in QA_SUFFIXES:
        raise DatasetError(f"{root}: not a BEIR dataset folder nor a QA file ({', '.join(QA_SUFFIXES)})")
    return _load_qa(root, documents)


def _load_qa(file: Path, documents: str | Path | None) -> EvalDataset:
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() == ".jsonl":
            data = [yaml.safe_load(line) for line in text.splitlines() if line.strip()]
        else:
            data = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise DatasetError(f"{file}: not valid YAML/JSON ({exc})") from None
    if isinstance(data, dict):
        documents = documents or (file.parent / data["documents"] if data.get("documents") else None)
        data = data.get("questions")
    if not isinstance(data, list) or not data:
        raise DatasetError(f"{file}: expected a list of {{question, answer, source}} entries (or {{documents, questions}})")
    if documents is None:
        raise DatasetError(f"{file}: which documents do the questions ask about? Give --documents FOLDER "
                           "(or a top-level `documents:` key in the file)")
    folder = Path(documents)
    if not folder.is_dir():
        raise DatasetError(f"documents folder {folder} not found")
    name = _slug(file.stem)
    source = SourceSettings(name=name, path=folder)
    queries, qrels, answers = {}, {}, {}
    for number, entry in enumerate(data, start=1):
        if not isinstance(entry, dict) or not str(entry.get("question") or "").strip():
            raise DatasetError(f"{file}: entry {number} has no question")
        qid = str(entry.get("id") or f"q{number}")
        queries[qid] = str(entry["question"])
        answer = entry.get("answer") or entry.get("answer_contains")
        if entry.get("source"):
            relative = str(entry["source"]).replace("\\", "/").lstrip("/")
            if not (folder / relative).is_file():
                raise DatasetError(f"{file}: entry {number}: source {relative!r} is not in {folder}")
            qrels[qid] = {f"{name}:{relative}": 1}
        elif answer:
            answers[qid] = str(answer)
        else:
            raise DatasetError(f"{file}: entry {number} needs an answer or a source document to judge it by")
    return EvalDataset(name, "qa", source, queries, qrels, answers)


def _normalise(text: str) -> str:
    return " ".join(text.casefold().split())


@task(name="judge-by-answers", cache_policy=NO_CACHE)
def judge_by_answers(store: ChunkStore, source: str, answers: dict[str, str]) -> dict[str, dict[str, int]]:
    """For QA questions without a source: the documents one of whose chunks contains the answer text
    (case and whitespace folded) are the relevant ones. An answer split across two chunks is missed."""
    wanted = {qid: _normalise(answer) for qid, answer in answers.items()}
    qrels: dict[str, dict[str, int]] = {qid: {} for qid in answers}
    for _, payload in store.points():
        if payload.get("source") != source:
            continue
        text = _normalise(payload.get("text", ""))
        for qid, answer in wanted.items():
            if answer in text:
                qrels[qid][payload["doc_id"]] = 1
    return qrels


@task(name="run-queries", cache_policy=NO_CACHE)
def run_queries(
    retriever: Retriever, queries: dict[str, str], groups: Sequence[str], mode: str
) -> tuple[dict[str, list[str]], list[float]]:
    """Each query in ``mode``: its document ranking (best first, up to DEPTH) and its latency in ms
    (embedding the question plus the Qdrant query)."""
    ranking, latencies = {}, []
    for qid, text in queries.items():
        started = time.perf_counter()
        hits = retriever.run(text, groups, top_k=CHUNKS_PER_QUERY, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000)
        ranking[qid] = list(dict.fromkeys(hit.doc_id for hit in hits))[:DEPTH]
    return ranking, latencies


def _percentile(values: Sequence[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@flow(name="evaluate")
def evaluate(
    dataset: str,
    modes: list[str] | None = None,
    documents: str | None = None,
    split: str = "test",
    output_dir: str | None = None,
    config_file: str | None = None,
) -> EvaluationReport:
    """Evaluate retrieval on ``dataset`` (a BEIR folder or a QA file, see
    [load_dataset][enclave.flows.evaluate_flow.load_dataset]) in each of ``modes``; writes the report to
    ``output_dir`` (default ``<data_dir>/eval/<name>``) and publishes it as the Markdown artifact
    ``evaluation-<name>``. ``modes`` default to all three: dense, sparse, hybrid. Raises DatasetError
    for a bad dataset, ValueError for an unknown mode."""
    started = time.perf_counter()
    modes = list(modes or ("dense", "sparse", "hybrid"))
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"unknown retrieval modes {unknown}; choose from {', '.join(MODES)}")
    settings = load_settings(config_file)
    logger = get_run_logger()
    data = load_dataset(dataset, documents, split)
    settings = settings.model_copy(update={"index": settings.index.model_copy(update={"collection": f"eval-{data.name}"})})

    pipeline = IngestPipeline.from_settings(settings, progress=current_progress())
    index, embedder = pipeline.index, pipeline.components.embedder
    try:
        ingested = pipeline.run(data.source)
        logger.info("%s: %s, %d chunks embedded in %.1f s", data.name, ingested.counts(),
                    ingested.chunks_embedded, ingested.seconds)
        qrels = dict(data.qrels)
        if data.answers:
            qrels.update(judge_by_answers(pipeline.store, data.source.name, data.answers))
        retriever = build_retriever(settings, embedder, index)
        results = []
        for mode in modes:
            ranking, latencies = run_queries(retriever, data.queries, data.source.groups, mode)
            scores = score_ranking(qrels, ranking, METRICS)
            results.append(ModeResult(mode, scores, round(_percentile(latencies, 50), 2),
                                      round(_percentile(latencies, 95), 2), len(latencies),
                                      per_query(qrels, ranking, "ndcg@10")))
            logger.info("%s: nDCG@10 %.4f, recall@100 %.4f", mode, scores["ndcg@10"], scores["recall@100"])
        r, b = settings.retrieval, settings.bm25
        report = EvaluationReport(
            dataset=data.name, kind=data.kind,
            documents=sum(1 for o in ingested.outcomes if o.status in ("indexed", "updated", "unchanged")),
            chunks=pipeline.store.count(source=data.source.name), queries=len(data.queries),
            judged_queries=sum(1 for judged in qrels.values() if any(rel > 0 for rel in judged.values())),
            ingest_seconds=round(ingested.seconds, 1), chunks_embedded=ingested.chunks_embedded,
            seconds=0.0, results=results,
            settings={"rrf_k": r.rrf_k, "dense_weight": r.dense_weight, "sparse_weight": r.sparse_weight,
                      "prefetch": max(r.prefetch, CHUNKS_PER_QUERY), "bm25_k": b.k, "bm25_b": b.b,
                      "bm25_avg_len": b.avg_len, "embedder": settings.embedder.model},
        )
    finally:
        pipeline.close()
    report.seconds = round(time.perf_counter() - started, 1)
    folder = Path(output_dir) if output_dir else Path(settings.data_dir) / "eval" / data.name
    paths = report.write(folder)
    create_markdown_artifact(report.to_markdown(), key=f"evaluation-{data.name.lower().replace('_', '-')}",
                             description=f"Retrieval evaluation of {data.name}; files in {folder}")
    logger.info("report written to %s", ", ".join(str(p) for p in paths.values()))
    return report
