"""The ``evaluate`` flow: how well retrieval finds the right documents, per retrieval mode.

Read top to bottom: load the dataset (a BEIR folder, or a QA file with the documents it is about),
ingest its documents into a collection of its own (``eval-<name>``, incremental like any ingest, so
a second run embeds nothing; one built with other embedder, chunker or BM25 settings is replaced by an
empty generation first), judge QA questions that name no source by where their answer occurs,
run every query in each mode (dense, sparse, hybrid), score the document rankings (nDCG@10,
recall@10/100, MRR@10, hit@k; see [enclave.indexes.retrieval_metrics][enclave.indexes.retrieval_metrics])
and time each query. The report is a Prefect Markdown artifact (``evaluation-<name>``) and files: JSON,
Markdown and a PNG plot.

Relevance is judged per document: a query's chunk hits become a document ranking, each document at
its best chunk's rank.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
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
from enclave.connectors.squad import SquadConnector, is_squad_file
from enclave.flows.answer_metrics import JudgedAnswer, judge_answer, percentile, score_answers
from enclave.flows.answer_pipeline import Answered, AnswerPipeline
from enclave.flows.components import build_embedder, build_retriever
from enclave.flows.evaluation_report import AnswerResult, EvaluationReport, ModeResult
from enclave.flows.index_location import generations
from enclave.flows.index_manifest import IndexOutdated
from enclave.flows.ingest_pipeline import IngestPipeline
from enclave.flows.progress import current_progress
from enclave.indexes.chunk_store import MODES, ChunkStore
from enclave.indexes.embedder import DenseEmbedder
from enclave.indexes.index_backend import IndexBackend
from enclave.indexes.retrieval_metrics import METRICS, per_query, score_ranking
from enclave.indexes.retriever import Retriever
from enclave.llms.fallback_router import AllGeneratorsFailed, Token
from enclave.settings import Settings, SourceSettings, load_settings

#: Documents ranked per query: enough for recall@100.
DEPTH = 100
#: Chunks fetched per query to fill DEPTH documents (a document can have several chunks).
CHUNKS_PER_QUERY = 2 * DEPTH
QA_SUFFIXES = (".yaml", ".yml", ".json", ".jsonl")
#: The answer evaluation's name for the whole configured route (the others are generator names).
ROUTE = "route"
#: Who asks, in the usage and audit logs, when the evaluation answers questions.
EVAL_PRINCIPAL = "enclave-eval"


@dataclass
class EvalDataset:
    """Queries, judgements and the documents they are about.

    ``qrels``: query id → {doc id: relevance}; ``answers``: query id → answer text, for
    QA questions without a source document (judged after ingestion by
    [judge_by_answers][enclave.flows.evaluate_flow.judge_by_answers]); ``golds``: query id → gold
    answer texts for the answer evaluation, an empty list for a question the documents do not
    answer (a BEIR dataset has none).
    """

    name: str
    kind: str  # "beir", "qa" or "squad"
    source: SourceSettings
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    answers: dict[str, str] = field(default_factory=dict)
    golds: dict[str, list[str]] = field(default_factory=dict)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "dataset"


def load_dataset(path: str | Path, documents: str | Path | None = None, split: str = "test") -> EvalDataset:
    """A BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``), a SQuAD file, or a QA file.

    A SQuAD file (SQuAD 1.1/2.0 JSON) is its own documents: each paragraph one document, each question
    judged by its paragraph and its gold answers (none for SQuAD 2.0's unanswerable ones). A QA file
    (YAML, JSON or JSONL) lists ``{question, answer | answer_contains, source?}``, or
    ``{question, answerable: false}`` for a question the documents do not answer; ``source`` is a
    document path relative to the documents folder. The folder is ``documents``, or the file's
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
    if is_squad_file(root):
        return _load_squad(root)
    if not root.is_file() or root.suffix.lower() not in QA_SUFFIXES:
        raise DatasetError(f"{root}: not a BEIR dataset folder nor a QA file ({', '.join(QA_SUFFIXES)})")
    return _load_qa(root, documents)


def _load_squad(file: Path) -> EvalDataset:
    name = _slug(file.stem)
    source = SourceSettings(name=name, kind="squad", path=file, classification="public")
    questions = SquadConnector(name, file).questions()
    if not questions:
        raise DatasetError(f"{file}: no questions")
    return EvalDataset(
        name, "squad", source, {q.qid: q.question for q in questions},
        {q.qid: {q.doc_id: 1} for q in questions if q.answerable},
        golds={q.qid: list(q.answers) if q.answerable else [] for q in questions},
    )


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
    queries, qrels, answers, golds = {}, {}, {}, {}
    for number, entry in enumerate(data, start=1):
        if not isinstance(entry, dict) or not str(entry.get("question") or "").strip():
            raise DatasetError(f"{file}: entry {number} has no question")
        qid = str(entry.get("id") or f"q{number}")
        queries[qid] = str(entry["question"])
        answer = entry.get("answer") or entry.get("answer_contains")
        if entry.get("answerable", True) is False:
            if answer or entry.get("source"):
                raise DatasetError(f"{file}: entry {number} is answerable: false but names an answer or source")
            golds[qid] = []
            continue
        if answer:
            golds[qid] = [str(answer)]
        if entry.get("source"):
            relative = str(entry["source"]).replace("\\", "/").lstrip("/")
            if not (folder / relative).is_file():
                raise DatasetError(f"{file}: entry {number}: source {relative!r} is not in {folder}")
            qrels[qid] = {f"{name}:{relative}": 1}
        elif answer:
            answers[qid] = str(answer)
        else:
            raise DatasetError(f"{file}: entry {number} needs an answer or a source document to judge it by "
                               "(or answerable: false)")
    return EvalDataset(name, "qa", source, queries, qrels, answers, golds)


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
def _start_afresh(settings: Settings) -> None:
    """Replace the evaluation collection by an empty generation (the old one is dropped: it holds only
    the dataset, which the next ingest brings back with the current settings)."""
    index_generations = generations(settings)
    previous, name = index_generations.live(), index_generations.new_name()
    index_generations.open(name, build_embedder(settings).dimension).close()
    index_generations.switch(name)
    index_generations.drop(previous)


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


def sample_questions(golds: dict[str, list[str]], limit: int | None) -> list[str]:
    """Up to ``limit`` question ids (all for None), answerable and unanswerable ones in the dataset's
    proportion, each group in a fixed order of their ids' SHA-1 (the same sample every run)."""
    order = sorted(golds, key=lambda qid: hashlib.sha1(qid.encode()).hexdigest())
    if limit is None or limit >= len(order):
        return order
    unanswerable = [q for q in order if not golds[q]]
    answerable = [q for q in order if golds[q]]
    take = round(limit * len(unanswerable) / len(order))
    return answerable[: limit - take] + unanswerable[:take]


@task(name="answer-questions", cache_policy=NO_CACHE)
def answer_questions(pipeline: AnswerPipeline, queries: dict[str, str], golds: dict[str, list[str]],
                     qrels: dict[str, dict[str, int]], groups: Sequence[str], only: list[str] | None,
                     label: str) -> list[JudgedAnswer]:
    """Each question through the whole answer path (retrieval, abstention gate, prompt, ``only`` the
    named generators or the whole route for None), judged against its gold answers and documents.
    Time to first token is measured to the first piece of answer text, as a streaming client sees it."""
    logger = get_run_logger()
    judged = []
    for number, (qid, question) in enumerate(queries.items(), start=1):
        started = time.perf_counter()
        first_token = None
        answer = None
        try:
            for event in pipeline.stream(question, groups, principal=EVAL_PRINCIPAL, only=only):
                if isinstance(event, Token) and first_token is None:
                    first_token = time.perf_counter() - started
                elif isinstance(event, Answered):
                    answer = event.answer
        except AllGeneratorsFailed as exc:
            elapsed = time.perf_counter() - started
            judged.append(JudgedAnswer(qid, bool(golds[qid]), False, 0.0, 0.0, False, 0, 0, elapsed, elapsed,
                                       failed=True, text=str(exc)))
            continue
        assert answer is not None  # a stream that does not raise ends with Answered
        total = time.perf_counter() - started
        judged.append(judge_answer(
            qid, answer.text, answer.answered, golds[qid], [(c.doc_id, c.text) for c in answer.citations],
            [doc for doc, rel in qrels.get(qid, {}).items() if rel > 0],
            first_token_seconds=first_token if first_token is not None else total, total_seconds=total,
            tokens_in=answer.tokens_in, tokens_out=answer.tokens_out, cost=answer.cost, generator=answer.generator,
        ))
        if number % 10 == 0 or number == len(queries):
            logger.info("%s: %d/%d questions answered", label, number, len(queries))
    return judged


def _evaluate_answers(settings: Settings, data: EvalDataset, qrels: dict[str, dict[str, int]],
                      embedder: DenseEmbedder, index: IndexBackend, labels: list[str],
                      max_questions: int | None) -> list[AnswerResult]:
    logger = get_run_logger()
    chosen = sample_questions(data.golds, max_questions)
    queries = {qid: data.queries[qid] for qid in chosen}
    unanswerable = sum(1 for qid in chosen if not data.golds[qid])
    pipeline = AnswerPipeline.from_settings(settings, embedder=embedder, index=index)
    results = []
    for label in labels:
        judged = answer_questions(pipeline, queries, data.golds, qrels, data.source.groups,
                                  None if label == ROUTE else [label], label)
        metrics = score_answers(judged)
        results.append(AnswerResult(label, len(judged), len(judged) - unanswerable, unanswerable, metrics,
                                    [asdict(j) for j in judged]))
        logger.info("%s: token F1 %.3f, citation precision %.3f, abstention recall %.3f, wrongly refused %.3f, "
                    "TTFT p50 %.2f s", label, metrics["token_f1"], metrics["citation_precision"],
                    metrics["abstention_recall"], metrics["wrongly_refused"], metrics["first_token_p50_s"])
    return results


@flow(name="evaluate")
def evaluate(
    dataset: str,
    modes: list[str] | None = None,
    documents: str | None = None,
    split: str = "test",
    output_dir: str | None = None,
    config_file: str | None = None,
    answers: bool = False,
    generators: list[str] | None = None,
    max_questions: int | None = None,
) -> EvaluationReport:
    """Evaluate retrieval on ``dataset`` (a BEIR folder, a SQuAD file or a QA file, see
    [load_dataset][enclave.flows.evaluate_flow.load_dataset]) in each of ``modes``; writes the report to
    ``output_dir`` (default ``<data_dir>/eval/<name>``) and publishes it as the Markdown artifact
    ``evaluation-<name>``. ``modes`` default to all three: dense, sparse, hybrid.

    With ``answers`` (a dataset with gold answers: SQuAD or QA), also answer the questions through the
    whole answer path and score the answers (see [score_answers][enclave.flows.answer_metrics.score_answers]),
    once per entry of ``generators``: ``route`` (the configured route) or a generator's name alone;
    default the route and then each of its generators. ``max_questions`` answers a fixed sample of that
    many (see [sample_questions][enclave.flows.evaluate_flow.sample_questions]). Raises DatasetError for a
    bad dataset, ValueError for an unknown mode or generator."""
    started = time.perf_counter()
    modes = list(modes or ("dense", "sparse", "hybrid"))
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"unknown retrieval modes {unknown}; choose from {', '.join(MODES)}")
    settings = load_settings(config_file)
    logger = get_run_logger()
    data = load_dataset(dataset, documents, split)
    choices = [ROUTE, *(g.name for g in settings.route_generators())]
    labels = list(generators or choices)
    if answers:
        unknown = [g for g in labels if g not in choices]
        if unknown:
            raise ValueError(f"unknown generators {unknown}; choose from {', '.join(choices)}")
        if not data.golds:
            raise DatasetError(f"{data.name}: no gold answers to evaluate answers by (a SQuAD or QA file has them)")
    settings = settings.model_copy(update={"index": settings.index.model_copy(update={"collection": f"eval-{data.name}"})})

    try:
        pipeline = IngestPipeline.from_settings(settings, progress=current_progress())
    except IndexOutdated as exc:  # the evaluation's own index, from other settings: start it afresh
        logger.warning("%s: rebuilding the evaluation index (%s)", data.name, ", ".join(exc.differences))
        _start_afresh(settings)
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
            results.append(ModeResult(mode, scores, round(percentile(latencies, 50), 2),
                                      round(percentile(latencies, 95), 2), len(latencies),
                                      per_query(qrels, ranking, "ndcg@10")))
            logger.info("%s: nDCG@10 %.4f, recall@100 %.4f", mode, scores["ndcg@10"], scores["recall@100"])
        answer_results = []
        if answers:
            answer_results = _evaluate_answers(settings, data, qrels, embedder, index, labels, max_questions)
        r, b = settings.retrieval, settings.bm25
        report = EvaluationReport(
            dataset=data.name, kind=data.kind,
            documents=sum(1 for o in ingested.outcomes if o.status in ("indexed", "updated", "unchanged")),
            chunks=pipeline.store.count(source=data.source.name), queries=len(data.queries),
            judged_queries=sum(1 for judged in qrels.values() if any(rel > 0 for rel in judged.values())),
            ingest_seconds=round(ingested.seconds, 1), chunks_embedded=ingested.chunks_embedded,
            seconds=0.0, results=results,
            settings={"fusion": r.fusion, "rrf_k": r.rrf_k, "dense_weight": r.dense_weight, "sparse_weight": r.sparse_weight,
                      "prefetch": max(r.prefetch, CHUNKS_PER_QUERY), "bm25_k": b.k, "bm25_b": b.b,
                      "bm25_avg_len": b.avg_len, "embedder": settings.embedder.model},
            answer_results=answer_results,
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
