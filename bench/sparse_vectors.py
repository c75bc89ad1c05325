"""What the sparse BM25 vectors cost ingestion: the ``ingest`` flow with and without them, one process run.

Target (issue 4): ingestion with sparse vectors is at most 10% slower, i.e. ratio <= 1.10.

Method: the first ``--docs`` abstracts of SciFact (``$ENCLAVE_TEST_CORPORA/scifact``, a BEIR source)
are ingested into a fresh embedded index by the real ``ingest`` flow, ``--rounds`` times each way,
alternating which goes first. Each run's settings are written to a YAML file and the flow is called
as ``ingest(source=..., config_file=...)``. "Without" swaps the BM25 embedder the flow's
``IngestComponents.from_settings`` builds (``enclave.flows.ingest_components.build_sparse_embedder``)
for one that returns empty vectors, so neither the term weights are computed nor the sparse index is
written: the whole cost of the feature is inside the difference. The embedding model is loaded and
warmed once before the runs; every ``DenseEmbedder`` of that model in the process shares it, so both
sides use the warm model. Prefect's ephemeral API is warmed by a first run that is not timed. Also
printed: the BM25 embedding alone against the dense encode of the same chunk texts.

Run::

    .venv/bin/python bench/sparse_vectors.py                  # 400 abstracts, 2 rounds (~5 minutes)
    .venv/bin/python bench/sparse_vectors.py --docs 200 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="enclave-bench-prefect-"))


class _NoSparse:
    """Stands in for Bm25Embedder: no terms, so the index gets no sparse vectors."""

    def embed(self, texts):
        from enclave.indexes import SparseVector

        return [SparseVector((), ()) for _ in texts]


def _subset(corpus: Path, docs: int, into: Path) -> Path:
    into.mkdir(parents=True)
    with (corpus / "corpus.jsonl").open(encoding="utf-8") as source, (into / "corpus.jsonl").open("w") as target:
        for number, line in enumerate(source):
            if number == docs:
                break
            target.write(line)
    (into / "queries.jsonl").write_text(json.dumps({"_id": "0", "text": "unused"}) + "\n")
    return into


def _config_file(settings, path: Path) -> str:
    """``settings`` written as YAML to ``path``, for the flow's ``config_file``."""
    return str(settings.write_yaml(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=400, help="SciFact abstracts to ingest per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs each way, alternating")
    options = parser.parse_args()
    corpora = Path(os.environ.get("ENCLAVE_TEST_CORPORA", REPO.parent / "shared" / "corpora"))
    if not (corpora / "scifact" / "corpus.jsonl").is_file():
        sys.exit(f"SciFact not found under {corpora} (set ENCLAVE_TEST_CORPORA)")

    import enclave.flows.ingest_components as components_module
    from enclave.flows import index_path, ingest
    from enclave.flows.components import build_embedder, build_sparse_embedder
    from enclave.indexes import ChunkStore, EdgeIndex
    from enclave.settings import Settings, SourceSettings

    work = Path(tempfile.mkdtemp(prefix="enclave-bench-sparse-"))
    try:
        data = _subset(corpora / "scifact", options.docs, work / "scifact")
        source = SourceSettings(name="scifact", kind="beir", path=data)
        embedder = build_embedder(Settings())  # loads the model the flow's embedders share (one per process)
        embedder.embed(["warm the model up"] * 16)
        real_builder = components_module.build_sparse_embedder

        def run(label: str, number: int) -> tuple[float, int]:
            settings = Settings(data_dir=work / f"data-{label}-{number}", sources=[source])
            config = _config_file(settings, work / f"enclave-{label}-{number}.yaml")
            components_module.build_sparse_embedder = real_builder if label == "with" else (lambda settings: _NoSparse())
            try:
                started = time.perf_counter()
                [report] = ingest(source="scifact", config_file=config)
                seconds = time.perf_counter() - started
            finally:
                components_module.build_sparse_embedder = real_builder
            return seconds, report.chunks_embedded

        print(f"warming Prefect and the parse worker ({min(options.docs, 20)} documents)...", flush=True)
        warm = _subset(corpora / "scifact", min(options.docs, 20), work / "warm")
        warm_settings = Settings(data_dir=work / "data-warm", sources=[SourceSettings(name="warm", kind="beir", path=warm)])
        ingest(source="warm", config_file=_config_file(warm_settings, work / "enclave-warm.yaml"))
        seconds: dict[str, list[float]] = {"with": [], "without": []}
        chunks = 0
        for number in range(options.rounds):
            order = ("with", "without") if number % 2 == 0 else ("without", "with")
            for label in order:
                took, chunks = run(label, number)
                seconds[label].append(took)
                print(f"round {number + 1}: {label:>7} sparse vectors: {took:6.1f} s ({chunks} chunks, "
                      f"{chunks / took:.1f} chunks/s)", flush=True)

        index = EdgeIndex(index_path(Settings(data_dir=work / "data-with-0")))
        try:
            texts = [payload["text"] for _, payload in ChunkStore(index).points()]
        finally:
            index.close()
        bm25 = build_sparse_embedder(Settings())
        started = time.perf_counter()
        bm25.embed(texts)
        bm25_seconds = time.perf_counter() - started
        started = time.perf_counter()
        embedder.embed(texts)
        dense_seconds = time.perf_counter() - started

        with_s, without_s = statistics.median(seconds["with"]), statistics.median(seconds["without"])
        print()
        print(f"ingest flow, {options.docs} SciFact abstracts, {chunks} chunks, median of {options.rounds} runs each way:")
        print(f"  with sparse vectors    {with_s:7.1f} s")
        print(f"  without sparse vectors {without_s:7.1f} s")
        print(f"  ratio with/without     {with_s / without_s:7.3f}   (target <= 1.10)")
        print(f"BM25 embedding alone: {bm25_seconds * 1000:.0f} ms for {len(texts)} chunks "
              f"({bm25_seconds / dense_seconds:.4f} of the dense encode's {dense_seconds:.1f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
