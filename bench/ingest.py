"""Ingestion throughput, re-run cost and memory of Enclave's ``ingest`` flow, against two references.

What it measures, all in ONE process run (it prints ratios; it asserts nothing about time):

1. **vs plain encode**: end-to-end chunks/s of the ``ingest`` flow (list, parse in the parse-worker
   process, chunk, embed, upsert into the embedded Qdrant Edge index, ledger) divided by the chunks/s
   of a bare ``SentenceTransformer.encode`` over exactly the same chunk texts (read back from the index
   after the run), same model object, same ``batch_size`` (``settings.embedder.batch_size``). The model
   is loaded and warmed once beforehand (the flow's own embedder shares the process's one copy of the
   model), so loading counts on neither side; Prefect's ephemeral API is warmed by a flow run over an empty folder
   first. Each timed side (the references too) runs in a worker thread, as the flow's tasks do (see
   ``_in_thread``). Target >= 0.90. Also printed: the share of the flow's wall time spent inside the model's
   ``encode`` (measured in the same stretch of time, so less at the mercy of other load), and with
   ``--breakdown`` each stage of the flow timed alone (parse, chunk, encode in the flow's slices, upsert).
   On a machine others share, ``--rounds N`` feeds the corpus in N parts, alternating a flow run with
   the plain encode of its new chunks, so both sides see the same kind of load.
2. **vs LlamaIndex**: seconds of a LlamaIndex ``IngestionPipeline`` (``SimpleDirectoryReader`` →
   ``SentenceSplitter`` → ``HuggingFaceEmbedding`` of the same local model, same batch size → a
   ``QdrantVectorStore`` on ``QdrantClient(":memory:")``, with a ``SimpleDocumentStore``) over the same
   files, divided by Enclave's seconds. Target >= 1.0. Run twice: with LlamaIndex's default
   ``chunk_size=1024`` (``--li-chunk-size``; tiktoken tokens), and with chunks matched to Enclave's
   (``chunk_size`` = the model's 254 content word pieces, overlap 32, counted by the model's own
   tokenizer). For each it prints the fraction of LlamaIndex's chunks longer than the model's max
   sequence length (256 word pieces with [CLS]/[SEP]): the embedder truncates them, so the rest of
   such a chunk is never embedded and cannot be found. Enclave's figure (0 by design) is measured too.
3. **re-run**: a second flow run over the unchanged folder, seconds ÷ first run's seconds; target
   <= 0.002, and the re-run must embed 0 chunks (``IngestReport.chunks_embedded``). Reference: the
   LlamaIndex pipeline re-run on the same documents with its docstore, ratio printed beside. Also
   printed, to show where a re-run's time goes: the same re-run as an ``IngestPipeline`` outside any flow
   run (a fresh pipeline: building its components, opening, syncing, closing the index; no Prefect), and
   the sync inside the flow alone (``report.seconds``). A flow run of Prefect 3.8.8 lasts at least until
   its heartbeat thread, which sleeps in whole seconds, notices the end: about 1 s whatever the flow does.
   The re-run builds no chunker and starts no parse worker, in this process as in a fresh one (where it
   loads no model either).
4. ``--corpora``: peak RSS of the whole process tree (the ``enclave`` CLI, the parse worker, Prefect's
   ephemeral server) sampled every 0.2 s with psutil while ``enclave ingest <folder>`` runs once per
   folder of ``$ENCLAVE_TEST_CORPORA`` (default ``../shared/corpora``: example-docs, parser-extras,
   scifact) into one temporary index. Target <= 2.5 GB. Takes 20-30 minutes on 2 cores: opt-in.

The default corpus is generated here, deterministically (``--seed``): ``--docs`` documents (default
250, about 2,100 Enclave chunks, about 5-6 minutes in all on 2 idle CPU cores) of Markdown, plain text and HTML
with headings and prose-like paragraphs, in a few folders. Everything is written to a temporary folder
that is removed at the end (``--keep`` keeps it).

Run::

    .venv/bin/python bench/ingest.py                 # targets 1-3 on the generated corpus
    .venv/bin/python bench/ingest.py --docs 100      # smaller and faster
    .venv/bin/python bench/ingest.py --rounds 4 --breakdown   # a shared machine; where the time goes
    .venv/bin/python bench/ingest.py --corpora       # target 4 only (20-30 min)
    make bench                                       # installs .[test,bench], then the default run

References: sentence-transformers' ``encode`` (the floor any pipeline built on it pays), LlamaIndex's
``IngestionPipeline`` with ``llama-index-embeddings-huggingface`` and ``llama-index-vector-stores-qdrant``
(the ``bench`` extra). Timings vary with whatever else runs on the machine: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# a fresh Prefect home migrates its database on first start: slow on a busy 2-core machine (default 20 s)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

CORPORA = Path(os.environ.get("ENCLAVE_TEST_CORPORA", REPO.parent / "shared" / "corpora"))
CORPUS_FOLDERS = ("example-docs", "parser-extras", "scifact")

TARGET_VS_ENCODE = 0.90
TARGET_VS_LLAMAINDEX = 1.0
TARGET_RERUN = 0.002
TARGET_PEAK_GB = 2.5


# -- the generated corpus ----------------------------------------------------------------------------
_TEAMS = ["the platform team", "the finance office", "our field engineers", "the security group", "the legal department",
          "the research lab", "customer support", "the procurement board", "the data office", "the Oslo site",
          "the warehouse crew", "the hiring committee", "each project lead", "the on-call engineer", "the auditors"]
_VERBS = ["reviews", "approves", "documents", "tracks", "publishes", "escalates", "archives", "measures", "schedules",
          "updates", "verifies", "reports", "renews", "replaces", "tests", "signs off on", "budgets for", "monitors"]
_OBJECTS = ["the quarterly forecast", "every access request", "the incident timeline", "supplier contracts",
            "the backup rotation", "travel expenses", "the release checklist", "calibration records",
            "the onboarding plan", "firmware updates", "the risk register", "customer refunds", "the capacity model",
            "laboratory samples", "the retention schedule", "shift handovers", "the sensor inventory", "license keys"]
_WHEN = ["before the end of each month", "within two working days", "every Tuesday morning", "after each release",
         "at the start of the fiscal year", "whenever a threshold is crossed", "once a quarter", "before any audit",
         "during the weekly review", "as soon as a ticket is opened", "no later than Friday noon", "twice a year"]
_WHY = ["so that nothing is lost between shifts", "because the regulator asks for it", "to keep costs predictable",
        "which shortens the time to recover", "since late changes are expensive", "to protect customer data",
        "so new staff can find it without asking", "because two incidents last year started there",
        "which the board asked for in March", "to keep the numbers comparable across sites"]
_ADJ = ["critical", "routine", "delayed", "encrypted", "regional", "temporary", "approved", "outdated", "redundant",
        "shared", "confidential", "automated", "manual", "annual", "preliminary"]
_NOUNS = ["deployment", "invoice", "dashboard", "contract", "sensor", "policy", "budget", "backlog", "ticket", "server",
          "report", "shipment", "prototype", "workshop", "milestone", "survey", "audit", "roadmap", "vendor", "laptop"]
_PLACES = ["in Bergen", "at the Tromsø office", "in the main data centre", "on the shared drive", "in the wiki",
           "at headquarters", "in the test lab", "on the production line", "in the customer portal", "in Stavanger"]
_NUMBERS = ["3", "5", "7", "12", "14", "20", "30", "45", "90", "120", "250", "1,200"]
_UNITS = ["days", "hours", "percent", "kroner", "units", "requests", "tickets", "employees", "sites", "servers"]
_SECTIONS = ["Purpose", "Scope", "Background", "Responsibilities", "Procedure", "Exceptions", "Timeline", "Costs",
             "Risks", "Findings", "Recommendations", "Open questions", "Definitions", "Escalation", "Review",
             "Training", "Tooling", "Metrics", "History", "Contacts"]
_TOPICS = ["Travel policy", "Incident review", "Backup procedure", "Vendor onboarding", "Quarterly planning",
           "Access control", "Release process", "Laboratory safety", "Expense handling", "Sensor calibration",
           "Remote work", "Data retention", "Customer escalation", "Hardware refresh", "Security training"]
_FOLDERS = ["handbook", "engineering", "finance", "operations", "research", "legal"]


def _sentence(rng: random.Random) -> str:
    form = rng.randrange(6)
    team, verb, obj = rng.choice(_TEAMS), rng.choice(_VERBS), rng.choice(_OBJECTS)
    if form == 0:
        text = f"{team} {verb} {obj} {rng.choice(_WHEN)}, {rng.choice(_WHY)}"
    elif form == 1:
        text = (f"last quarter {team} counted {rng.choice(_NUMBERS)} {rng.choice(_UNITS)} of {rng.choice(_ADJ)} "
                f"{rng.choice(_NOUNS)} work {rng.choice(_PLACES)}")
    elif form == 2:
        text = f"a {rng.choice(_ADJ)} {rng.choice(_NOUNS)} {rng.choice(_PLACES)} needs a second signature {rng.choice(_WHEN)}"
    elif form == 3:
        text = (f"if {obj} is {rng.choice(_ADJ)}, {team} {verb} the {rng.choice(_NOUNS)} and tells "
                f"{rng.choice(_TEAMS)} {rng.choice(_WHEN)}")
    elif form == 4:
        text = f"{team} keeps {obj} {rng.choice(_PLACES)} {rng.choice(_WHY)}"
    else:
        text = (f"the {rng.choice(_NOUNS)} budget grew by {rng.choice(_NUMBERS)} {rng.choice(_UNITS)}, and "
                f"{team} {verb} {obj} {rng.choice(_WHEN)}")
    return text[0].upper() + text[1:] + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(3, 9)))


def _document(rng: random.Random, number: int) -> tuple[str, str]:
    """(relative path, content) of generated document ``number``: Markdown, plain text or HTML."""
    kind = rng.choice(["md", "md", "txt", "html"])
    title = f"{rng.choice(_TOPICS)} {number:04d}"
    sections = []  # (level, heading, [paragraphs])
    for _ in range(rng.choice([1, 2, 3, 4, 5, 6, 8])):
        sections.append((2, rng.choice(_SECTIONS), [_paragraph(rng) for _ in range(rng.randint(1, 4))]))
        if rng.random() < 0.3:
            sections.append((3, rng.choice(_SECTIONS), [_paragraph(rng) for _ in range(rng.randint(1, 2))]))
    folder = rng.choice(_FOLDERS)
    slug = title.lower().replace(" ", "-")
    if kind == "md":
        parts = [f"# {title}", ""]
        for level, heading, paragraphs in sections:
            parts += ["#" * level + " " + heading, ""]
            for paragraph in paragraphs:
                parts += [paragraph, ""]
            if rng.random() < 0.25:
                parts += [f"- {_sentence(rng)}" for _ in range(rng.randint(2, 5))] + [""]
        return f"{folder}/{slug}.md", "\n".join(parts)
    if kind == "txt":
        parts = [title, "=" * len(title), ""]
        for _, heading, paragraphs in sections:
            parts += [heading, ""] + [p + "\n" for p in paragraphs]
        return f"{folder}/{slug}.txt", "\n".join(parts)
    body = [f"<h1>{title}</h1>"]
    for level, heading, paragraphs in sections:
        body.append(f"<h{level}>{heading}</h{level}>")
        body += [f"<p>{p}</p>" for p in paragraphs]
    html = f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    return f"{folder}/{slug}.html", html


def generate_corpus(root: Path, documents: int, seed: int) -> dict[str, int]:
    """Write ``documents`` generated files under ``root``; returns the count per extension."""
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    for number in range(documents):
        rel, text = _document(rng, number)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        counts[path.suffix] = counts.get(path.suffix, 0) + 1
    return counts


# -- results -----------------------------------------------------------------------------------------
@dataclass
class Row:
    target: str
    measured: float
    goal: str
    passed: bool | None  # None: informational
    note: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)

    def add(self, target: str, measured: float, goal: str, passed: bool | None, note: str = "") -> None:
        self.rows.append(Row(target, measured, goal, passed, note))
        verdict = "" if passed is None else ("PASS" if passed else "MISS")
        print(f"  => {target}: {measured:.4g} (target {goal}) {verdict} {note}".rstrip(), flush=True)

    def table(self) -> str:
        width = max(len(r.target) for r in self.rows)
        lines = [f"{'target':<{width}}  {'measured':>10}  {'goal':>8}  verdict  note"]
        lines.append("-" * len(lines[0]) + "-" * 30)
        for r in self.rows:
            verdict = "-" if r.passed is None else ("PASS" if r.passed else "MISS")
            lines.append(f"{r.target:<{width}}  {r.measured:>10.4g}  {r.goal:>8}  {verdict:<7}  {r.note}")
        return "\n".join(lines)


def _say(text: str) -> None:
    print(text, flush=True)


# -- Enclave -----------------------------------------------------------------------------------------
def _enclave_settings(data_dir: Path, corpus: Path, batch_size: int | None, overrides: list[str] = ()):
    """Settings in code: ``data_dir``, one source ``bench`` at ``corpus``, the defaults otherwise, then
    ``overrides`` (``section.field=value``, the value read as YAML)."""
    import yaml

    from enclave.settings import Settings, SourceSettings

    fields: dict = {}
    if batch_size is not None:
        fields["embedder"] = {"batch_size": batch_size}
    for item in overrides:
        key, _, value = item.partition("=")
        *parents, name = key.strip().split(".")
        target = fields
        for parent in parents:
            target = target.setdefault(parent, {})
        target[name] = yaml.safe_load(value)
    return Settings(data_dir=data_dir, sources=[SourceSettings(name="bench", path=corpus)], **fields)


def _read_back(settings, dimension: int) -> list[tuple[str, int, str]]:
    """(doc_id, chunk number, text) of every chunk point in the index, in document order."""
    from enclave.flows import index_path
    from enclave.indexes import ChunkStore, EdgeIndex

    index = EdgeIndex(index_path(settings), dimension)
    try:
        rows = [(p.get("doc_id", ""), int(p.get("chunk", 0)), p.get("text", "")) for _, p in ChunkStore(index).points()]
    finally:
        index.close()
    return sorted(rows)


def _in_thread(fn, *args):
    """``fn(*args)`` run in a fresh worker thread, as the flow's tasks run (Prefect's thread pool). torch's
    OpenMP team of the main thread waits actively (libgomp's default): on a machine other processes keep
    busy, the same encode took 3x the time there that it took in a worker thread (measured on 2 cores),
    which would flatter Enclave against both references."""
    import threading

    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=target, name="bench-worker")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


class _EncodeClock:
    """Adds up the seconds spent inside ``model.encode`` (wrapped on the instance) until ``stop()``;
    ``carry`` goes on from an earlier clock's totals."""

    def __init__(self, model, carry: _EncodeClock | None = None) -> None:
        self.model = model
        self.seconds, self.calls = (carry.seconds, carry.calls) if carry else (0.0, 0)
        self.spans: list[tuple[float, float]] = carry.spans if carry else []  # (start, end) of each call
        original = model.encode

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                ended = time.perf_counter()
                self.seconds += ended - started
                self.calls += 1
                self.spans.append((started, ended))

        model.encode = timed

    def stop(self) -> None:
        self.model.__dict__.pop("encode", None)  # the class's method again

    def outside(self, start: float, end: float) -> str:
        """Where the time from ``start`` to ``end`` (a flow run) went outside encode calls: before the first,
        between calls, after the last."""
        spans = sorted((a, b) for a, b in self.spans if a >= start and b <= end)
        if not spans:
            return f"{end - start:.1f} s, no encode call"
        gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:])]
        big = sorted(gaps, reverse=True)[:3]
        return (f"{spans[0][0] - start:.1f} s before the first encode call, {sum(gaps):.1f} s in {len(gaps)} gaps between "
                f"calls (largest {', '.join(f'{g:.2f}' for g in big)} s), {end - spans[-1][1]:.1f} s after the last")


def _tree_cpu() -> float:
    """CPU seconds of this process and its children, exited or alive (see :func:`_cpu_parts`)."""
    return sum(_cpu_parts().values())


def _cpu_parts() -> dict[str, float]:
    """CPU seconds so far: ``process`` (this one, all threads), ``exited children`` (a parse worker once
    stopped), and each live child by kind: ``prefect server`` (the ephemeral API), ``parse worker``, ``other``."""
    import resource

    import psutil

    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    parts = {"process": own.ru_utime + own.ru_stime, "exited children": reaped.ru_utime + reaped.ru_stime}
    for child in psutil.Process().children(recursive=True):
        try:
            command, times = " ".join(child.cmdline()), child.cpu_times()
        except psutil.Error:
            continue
        kind = "prefect server" if ("uvicorn" in command or "prefect" in command) else (
            "parse worker" if "parse_worker" in command else "other")
        parts[kind] = parts.get(kind, 0.0) + times.user + times.system
    return parts


def _timed_flow(settings, **kwargs):
    """Run the ingest flow on ``settings`` (written to a file beside its data_dir: a flow takes a settings
    file); returns (reports, wall seconds, CPU seconds by part, see :func:`_cpu_parts`). Its embedder
    shares the model this process loaded."""
    from enclave.flows import ingest

    config = settings.write_yaml(Path(settings.data_dir).with_suffix(".yaml"))
    started, before = time.perf_counter(), _cpu_parts()
    reports = ingest(config_file=str(config), **kwargs)
    seconds, after = time.perf_counter() - started, _cpu_parts()
    return reports, seconds, {k: after[k] - before.get(k, 0.0) for k in after}


def _cpu_text(parts: dict[str, float]) -> str:
    shown = {k: v for k, v in parts.items() if v >= 0.05}
    return f"{sum(parts.values()):.1f} CPU s (" + ", ".join(f"{k} {v:.1f}" for k, v in shown.items()) + ")"


# -- LlamaIndex --------------------------------------------------------------------------------------
def _llamaindex_run(files: Path | list[Path], pipeline) -> tuple[float, list]:
    """Seconds to read ``files`` (a folder, recursively, or a list of files) and run ``pipeline`` on them; the nodes."""
    from llama_index.core import SimpleDirectoryReader

    started = time.perf_counter()
    if isinstance(files, Path):
        reader = SimpleDirectoryReader(str(files), recursive=True, filename_as_id=True)
    else:
        reader = SimpleDirectoryReader(input_files=[str(f) for f in files], filename_as_id=True)
    documents = reader.load_data()
    nodes = pipeline.run(documents=documents)
    return time.perf_counter() - started, nodes


def _llamaindex_pipeline(splitter, embed_model, collection: str):
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    store = QdrantVectorStore(client=QdrantClient(":memory:"), collection_name=collection)
    return IngestionPipeline(transformations=[splitter, embed_model], vector_store=store, docstore=SimpleDocumentStore())


def _truncation(texts: list[str], tokenizer, max_tokens: int) -> tuple[float, float, float]:
    """(fraction of texts over ``max_tokens`` content word pieces, fraction of all word pieces cut off,
    total word pieces the embedder sees)."""
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]] if texts else []
    over = sum(1 for n in lengths if n > max_tokens)
    lost = sum(max(0, n - max_tokens) for n in lengths)
    total = sum(lengths)
    return over / max(len(lengths), 1), lost / max(total, 1), total - lost


# -- --breakdown: the flow's stages one after another, each timed alone ---------------------------------
def breakdown(settings, embedder, rows: list[tuple[str, int, str]], flow_seconds: float, encode_seconds: float,
              work: Path) -> None:
    """Where the flow's time goes: list, fetch, parse (in the parse worker), chunk, encode in the flow's slices,
    upsert, each run alone over the same corpus, wall and CPU seconds (the parse worker's CPU included)."""
    import numpy as np

    from enclave.flows.components import build_chunker, build_connector, build_parser
    from enclave.indexes import ChunkStore, EdgeIndex

    stages: list[tuple[str, float, float]] = []

    def stage(name: str, work_fn):
        wall, used = time.perf_counter(), _tree_cpu()
        value = _in_thread(work_fn)
        stages.append((name, time.perf_counter() - wall, _tree_cpu() - used))
        return value

    source = settings.sources[0]
    connector = build_connector(source)
    docs = stage("list", lambda: list(connector.list_documents()))
    data = stage("fetch", lambda: [connector.fetch(doc) for doc in docs])
    parser = build_parser(settings)

    def parse():
        try:
            return [parser.run(doc, blob) for doc, blob in zip(docs, data)]
        finally:
            parser.close()  # the worker's CPU time counts once it has exited

    documents = stage("parse (worker process)", parse)
    chunker = build_chunker(settings, embedder)
    nodes = stage("chunk (tokenizer)", lambda: [chunker.run(document) for document in documents])
    batch_docs, step = settings.ingest.batch_documents, max(embedder.batch_size * 4, 1)

    def sliced():
        out = []
        for first in range(0, len(nodes), batch_docs):
            texts = [chunk.text for doc_chunks in nodes[first:first + batch_docs] for chunk in doc_chunks]
            for start in range(0, len(texts), step):
                out.append(embedder.embed(texts[start:start + step]))
        return out

    vectors = stage(f"encode, flow's slices ({batch_docs} docs, <= {step} texts per call)", sliced)
    all_texts = [text for _, _, text in rows]
    stage("encode, one call over all chunks", lambda: embedder.embed(all_texts))
    index = EdgeIndex(work / "breakdown-index", embedder.dimension)

    def upsert():
        matrix, offset, store = np.concatenate(vectors), 0, ChunkStore(index)
        for first in range(0, len(nodes), batch_docs):
            flat = [chunk for doc_chunks in nodes[first:first + batch_docs] for chunk in doc_chunks]
            store.upsert(flat, matrix[offset:offset + len(flat)])
            offset += len(flat)
        index.close()

    stage("upsert (Qdrant Edge)", upsert)
    chunks = sum(len(n) for n in nodes)
    _say(f"  breakdown, each stage alone ({chunks} chunks; the flow took {flow_seconds:.1f} s, plain encode "
         f"{encode_seconds:.1f} s):")
    for name, wall, used in stages:
        _say(f"    {name:<58} {wall:7.2f} s wall {used:7.2f} s CPU  {1000 * wall / max(chunks, 1):6.1f} ms/chunk")
    serial = sum(wall for name, wall, _ in stages if name != "encode, one call over all chunks")
    _say(f"    sum of the flow's stages run serially: {serial:.1f} s ({chunks / serial:.1f} chunks/s)")


# -- the default run ---------------------------------------------------------------------------------
def run_default(options: argparse.Namespace, work: Path, results: Results) -> None:
    from enclave.indexes.embedder import DenseEmbedder, resolve_model_path

    staging, corpus = work / "staging", work / "corpus"
    counts = generate_corpus(staging, options.docs, options.seed)
    corpus.mkdir()
    size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
    _say(f"corpus: {options.docs} documents ({', '.join(f'{n} {ext}' for ext, n in sorted(counts.items()))}), "
         f"{size / 1e6:.2f} MB, seed {options.seed}, at {corpus}")

    settings = _enclave_settings(work / "enclave-data", corpus, options.batch_size, options.set)
    batch_size = settings.embedder.batch_size
    model_path = resolve_model_path(settings.embedder.model)
    embedder = DenseEmbedder(settings.embedder.model, device=settings.embedder.device, batch_size=batch_size)
    started = time.perf_counter()
    model = embedder.model
    for warm in (embedder.embed, lambda texts: _in_thread(embedder.embed, texts)):
        warm(["warm-up sentence one.", "warm-up sentence two, a little longer than the first."])
    tokenizer, max_tokens = model.tokenizer, embedder.max_tokens
    _say(f"model: {model_path} (max_seq_length {model.max_seq_length}, {max_tokens} content word pieces), "
         f"batch_size {batch_size}, loaded in {time.perf_counter() - started:.1f} s; torch threads: "
         f"{__import__('torch').get_num_threads()}")
    _say(f"settings: ingest {settings.ingest.model_dump(exclude_none=True)}, chunker {settings.chunker.model_dump()}"
         + (f", overrides {options.set}" if options.set else ""))

    # Prefect's ephemeral API starts on the first flow run of a process: warm it on an empty folder
    empty = work / "empty"
    empty.mkdir()
    _, warm_seconds, _ = _timed_flow(_enclave_settings(work / "warm-data", empty, options.batch_size, options.set),
                                     path=str(empty))
    _say(f"prefect warm-up (a flow run over an empty folder, not counted): {warm_seconds:.1f} s")

    references = [] if options.skip_llamaindex else _llamaindex_references(options, settings, model_path, tokenizer, max_tokens)

    # 1 and 2: the corpus arrives in --rounds parts; per part, a flow run, the plain encode of its new chunks
    # and each LlamaIndex pipeline on its files, so all sides sample the same stretches of the machine's load
    files = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
    rounds = max(1, min(options.rounds, len(files)))
    first_seconds = first_inside = encode_seconds = 0.0
    chunks, rows, texts, seen, flow_cpu = 0, [], [], set(), {}
    encode_clock = _EncodeClock(model)
    try:
        for number in range(rounds):
            part = files[number * len(files) // rounds:(number + 1) * len(files) // rounds]
            for rel in part:  # a move keeps the file's mtime, so its version
                (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
                (staging / rel).rename(corpus / rel)
            label = f"round {number + 1}/{rounds}: {len(part)} new documents" if rounds > 1 else "first run"
            _say(f"\n[1] Enclave ingest flow, {label} ...")
            busy_before, flow_started = encode_clock.seconds, time.perf_counter()
            [report], seconds, cpu_seconds = _timed_flow(settings)
            flow_ended = time.perf_counter()
            for kind, value in cpu_seconds.items():
                flow_cpu[kind] = flow_cpu.get(kind, 0.0) + value
            first_seconds, first_inside = first_seconds + seconds, first_inside + report.seconds
            chunks += report.chunks_embedded
            _say(f"  {report.counts()}, {report.chunks_embedded} chunks embedded; flow call {seconds:.1f} s "
                 f"(report.seconds {report.seconds:.1f} s): {report.chunks_embedded / seconds:.1f} chunks/s; "
                 f"{_cpu_text(cpu_seconds)}; {encode_clock.seconds - busy_before:.1f} s inside encode")
            _say(f"  outside encode: {encode_clock.outside(flow_started, flow_ended)}")
            rows = _read_back(settings, embedder.dimension)
            new = [text for doc_id, chunk, text in rows if (doc_id, chunk) not in seen]
            seen.update((doc_id, chunk) for doc_id, chunk, _ in rows)
            texts += new
            encode_clock.stop()
            started, cpu = time.perf_counter(), _tree_cpu()
            _in_thread(lambda new=new: model.encode(new, batch_size=batch_size, normalize_embeddings=True,
                                                    convert_to_numpy=True, show_progress_bar=False))
            seconds, cpu_seconds = time.perf_counter() - started, _tree_cpu() - cpu
            encode_clock = _EncodeClock(model, encode_clock)
            encode_seconds += seconds
            _say(f"  plain SentenceTransformer.encode of the same {len(new)} texts (read back from the index), batch_size "
                 f"{batch_size}: {seconds:.1f} s, {len(new) / max(seconds, 1e-9):.1f} chunks/s; {cpu_seconds:.1f} CPU s")
            for reference in references:
                encode_clock.stop()
                seconds, nodes = _in_thread(_llamaindex_run, [corpus / rel for rel in part], reference["pipeline"])
                encode_clock = _EncodeClock(model, encode_clock)
                reference["seconds"] += seconds
                reference["nodes"] += nodes
                _say(f"  LlamaIndex [{reference['label']}]: {len(nodes)} chunks in {seconds:.1f} s "
                     f"({len(nodes) / max(seconds, 1e-9):.1f} chunks/s)")
    finally:
        encode_clock.stop()
    _say(f"\n  the flow's CPU in all: {_cpu_text(flow_cpu)}; inside encode {encode_clock.seconds:.1f} s wall")
    if len(texts) != chunks:
        _say(f"  warning: the index holds {len(texts)} chunks, the reports say {chunks} embedded")
    enclave_rate, encode_rate = chunks / first_seconds, len(texts) / encode_seconds
    ratio = enclave_rate / encode_rate
    results.add("1. e2e chunks/s / plain encode", ratio, f">= {TARGET_VS_ENCODE}", ratio >= TARGET_VS_ENCODE,
                f"{enclave_rate:.1f} vs {encode_rate:.1f} chunks/s, {chunks} chunks"
                + (f", {rounds} rounds" if rounds > 1 else ""))
    # where the flow's wall time went: inside the model's encode, or elsewhere (both under the same load)
    busy, calls = encode_clock.seconds, encode_clock.calls
    results.add("   share of the flow's time inside encode", busy / first_seconds, "info", None,
                f"{busy:.1f} of {first_seconds:.1f} s, {calls} encode calls at {chunks / max(busy, 1e-9):.1f} chunks/s")

    enclave_over, enclave_lost, enclave_pieces = _truncation(texts, tokenizer, max_tokens)
    from llama_index.core.schema import MetadataMode  # llama-index-core: an Enclave dependency

    for reference in references:
        nodes, li_seconds, label = reference["nodes"], reference["seconds"], reference["label"]
        embedded = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        over, lost, pieces = _truncation(embedded, tokenizer, max_tokens)
        _say(f"\n[2] LlamaIndex IngestionPipeline, SentenceSplitter {reference['description']}: {len(nodes)} chunks in "
             f"{li_seconds:.1f} s ({len(nodes) / li_seconds:.1f} chunks/s); {over:.1%} of them exceed {max_tokens} word "
             f"pieces and are truncated ({lost:.1%} of all word pieces never embedded); {pieces} word pieces embedded "
             f"vs Enclave's {enclave_pieces}")
        ratio = li_seconds / first_seconds
        results.add(f"2. llamaindex s / enclave s [{label}]", ratio, f">= {TARGET_VS_LLAMAINDEX}",
                    ratio >= TARGET_VS_LLAMAINDEX, f"{li_seconds:.1f} vs {first_seconds:.1f} s, {len(nodes)} chunks")
        results.add(f"   llamaindex chunks truncated [{label}]", over, "info", None,
                    f"{lost:.1%} of its word pieces never embedded")
    longest = max((len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]), default=0)
    results.add("   enclave chunks truncated", enclave_over, "0", enclave_over == 0,
                f"{len(texts)} chunks, longest {longest} word pieces")

    if options.breakdown:
        breakdown(settings, embedder, rows, first_seconds, encode_seconds, work)

    # 3. re-run over unchanged input; the reference: the first LlamaIndex pipeline (its docstore) on all files again
    _say("\n[3] Enclave ingest flow, re-run over the unchanged folder ...")
    [again], again_seconds, _ = _timed_flow(settings)
    _say(f"  {again.counts()}, {again.chunks_embedded} chunks embedded; flow call {again_seconds:.2f} s "
         f"(report.seconds {again.seconds:.2f} s: the rest is the Prefect flow run, opening and closing the index)")
    rerun_ratio = again_seconds / first_seconds
    note = (f"{again_seconds:.2f} vs {first_seconds:.1f} s; inside the flow (report.seconds) "
            f"{again.seconds / max(first_inside, 1e-9):.4f}")
    if references:
        reference = references[0]
        li_again, again_nodes = _in_thread(_llamaindex_run, corpus, reference["pipeline"])
        li_rerun_ratio = li_again / reference["seconds"]
        _say(f"  LlamaIndex [{reference['label']}] re-run with its docstore: {len(again_nodes)} chunks embedded, "
             f"{li_again:.2f} s, ratio {li_rerun_ratio:.4f}")
        note += f"; llamaindex+docstore {li_rerun_ratio:.4f}"
    results.add("3. re-run s / first run s", rerun_ratio, f"<= {TARGET_RERUN}", rerun_ratio <= TARGET_RERUN, note)
    results.add("3. re-run chunks embedded", again.chunks_embedded, "0", again.chunks_embedded == 0)
    bare_seconds, bare = _pipeline_rerun(settings)
    _say(f"  the same re-run outside a flow run (IngestPipeline.from_settings, run, close): {bare_seconds:.2f} s, "
         f"{bare.counts()}, {bare.chunks_embedded} chunks embedded")
    results.add("   re-run without a flow run s / first run s", bare_seconds / first_seconds, "info", None,
                f"{bare_seconds:.2f} vs {first_seconds:.1f} s: the sync, opening and closing the index; no Prefect")


def _pipeline_rerun(settings):
    """(seconds, report) of a sync of ``settings``' source by a fresh ``IngestPipeline`` outside any flow run."""
    from enclave.flows import IngestPipeline

    def sync():
        with IngestPipeline.from_settings(settings) as pipeline:
            return pipeline.run(settings.sources[0])

    started = time.perf_counter()
    report = _in_thread(sync)
    return time.perf_counter() - started, report


def _llamaindex_references(options, settings, model_path: str, tokenizer, max_tokens: int) -> list[dict]:
    """The two LlamaIndex pipelines (LlamaIndex's chunk size; Enclave's), their embedder loaded and warmed."""
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    # SimpleDirectoryReader warns once per file that llama-index-readers-file is absent (it reads them as text)
    logging.getLogger("llama_index.core.readers.file.base").setLevel(logging.ERROR)
    li_batch = options.li_batch or settings.embedder.batch_size
    started = time.perf_counter()
    hf = HuggingFaceEmbedding(model_name=model_path, embed_batch_size=li_batch, device=settings.embedder.device)
    for warm in (hf.get_text_embedding, lambda text: _in_thread(hf.get_text_embedding, text)):
        warm("warm-up sentence.")
    _say(f"LlamaIndex HuggingFaceEmbedding(<the same model>, embed_batch_size={li_batch}) loaded in "
         f"{time.perf_counter() - started:.1f} s (not counted)")
    overlap = settings.chunker.overlap_tokens
    configs = [
        (f"chunk_size={options.li_chunk_size}", f"chunk_size={options.li_chunk_size} (its default tokenizer)",
         SentenceSplitter(chunk_size=options.li_chunk_size)),
        (f"chunk_size={max_tokens} overlap={overlap}", f"chunk_size={max_tokens} overlap={overlap} (the model's tokenizer, "
         "matched to Enclave's)", SentenceSplitter(
             chunk_size=max_tokens, chunk_overlap=overlap,
             tokenizer=lambda text: tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])),
    ]
    return [{"label": label, "description": description, "pipeline": _llamaindex_pipeline(splitter, hf, f"bench{n}"),
             "seconds": 0.0, "nodes": []} for n, (label, description, splitter) in enumerate(configs)]


# -- --corpora: peak RSS of the CLI's process tree ----------------------------------------------------
def _tree_rss(process) -> int:
    import psutil

    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_corpora(options: argparse.Namespace, work: Path, results: Results) -> None:
    import psutil

    if not CORPORA.is_dir():
        _say(f"--corpora: no corpora at {CORPORA} (set ENCLAVE_TEST_CORPORA); skipped")
        return
    cli = Path(sys.executable).parent / "enclave"
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "enclave.cli"]
    env = {k: v for k, v in os.environ.items() if k != "ENCLAVE_CONFIG" and not k.startswith("ENCLAVE_")}
    env.update(ENCLAVE_DATA_DIR=str(work / "corpora-data"), PREFECT_HOME=str(work / "corpora-prefect"))
    cwd = work / "corpora-cwd"  # no enclave.yaml here: defaults plus the environment
    cwd.mkdir(exist_ok=True)
    overall = 0
    for name in CORPUS_FOLDERS:
        folder = CORPORA / name
        if not folder.is_dir():
            _say(f"  {folder} missing; skipped")
            continue
        _say(f"\n[4] enclave ingest {folder} ...")
        log = work / f"corpora-{name}.log"
        started, peak = time.perf_counter(), 0
        with open(log, "wb") as out:
            child = subprocess.Popen([*command, "ingest", str(folder)], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
            process = psutil.Process(child.pid)
            while child.poll() is None:
                peak = max(peak, _tree_rss(process))
                time.sleep(0.2)
        seconds = time.perf_counter() - started
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        summary = next((line for line in reversed(tail) if "chunks embedded in" in line), tail[-1] if tail else "")
        _say(f"  exit {child.returncode} after {seconds:.0f} s, peak RSS of the tree {peak / 1e9:.2f} GB")
        _say(f"  {summary}")
        if child.returncode not in (0, 1):
            _say("  last lines:\n    " + "\n    ".join(tail[-15:]))
        results.add(f"4. peak RSS GB [{name}]", peak / 1e9, "info", None, f"{seconds:.0f} s, exit {child.returncode}")
        overall = max(overall, peak)
    results.add("4. peak RSS GB, all corpora", overall / 1e9, f"<= {TARGET_PEAK_GB}", overall / 1e9 <= TARGET_PEAK_GB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=250, help="generated documents (default 250, ~2,100 chunks)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="feed the corpus in this many parts, a flow run and the plain encode of its new chunks "
                             "each, alternating: steadier ratios on a machine others share (each flow run adds ~1 s)")
    parser.add_argument("--seed", type=int, default=20240611, help="seed of the generated corpus")
    parser.add_argument("--batch-size", type=int, default=None, help="embedder batch size (default: the settings' default)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override an Enclave setting, e.g. --set ingest.batch_documents=32 (repeatable)")
    parser.add_argument("--li-chunk-size", type=int, default=1024,
                        help="LlamaIndex SentenceSplitter chunk_size (default 1024, its own)")
    parser.add_argument("--li-batch", type=int, default=None, help="LlamaIndex embed_batch_size (default: Enclave's batch size)")
    parser.add_argument("--skip-llamaindex", action="store_true", help="skip the LlamaIndex reference (targets 1 and 3 only)")
    parser.add_argument("--breakdown", action="store_true",
                        help="after the first run, time the flow's stages alone (parse, chunk, encode in the flow's "
                             "slices, upsert): where the time goes when target 1 misses")
    parser.add_argument("--corpora", action="store_true", help="target 4 only: peak RSS over $ENCLAVE_TEST_CORPORA (20-30 min)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (corpus, indexes, logs)")
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="enclave-bench-ingest-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))  # never the user's Prefect database
    results = Results()
    started = time.perf_counter()
    try:
        if options.corpora:
            run_corpora(options, work, results)
        else:
            run_default(options, work, results)
    finally:
        if options.keep:
            _say(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    _say(f"\nsummary ({time.perf_counter() - started:.0f} s in all, {os.cpu_count()} CPUs; other load on the machine "
         f"skews absolute figures, the ratios come from this one run):")
    _say(results.table())


if __name__ == "__main__":
    main()
