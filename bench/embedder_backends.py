"""The openvino embedder backend against sentence-transformers (torch): throughput and rankings, one process.

Run: ``nice -n 10 .venv/bin/python bench/embedder_backends.py [--texts 512] [--reps 3] [--docs 0]
[--part both|throughput|rankings]``.

(a) Throughput: ``--texts`` SciFact abstracts (title + " " + text, the first in corpus order that fill the
model's 256 word pieces, so every batch is full length), embedded at batch sizes 8 and 16 by
``DenseEmbedder`` (torch) and ``OpenVinoEmbedder``, after a warm-up of each, in interleaved repetitions
(torch, openvino, torch, openvino, ...; ``--reps`` each). Prints the median chunks/s of each and the ratio.

(b) Rankings: every SciFact test query (qrels/test.tsv) against a fixed corpus, exact dot-product search:
the whole corpus (5,183 abstracts) by default, or with ``--docs N`` every judged document plus a seeded
random sample up to N. Prints each backend's nDCG@10, the mean top-10 overlap with torch's ranking
(|both top 10s| / 10) and the largest cosine distance between the two backends' vectors of one text.

The IR cache is a temporary folder, so the conversion is timed too (printed, not in the throughput). Ratios
and numbers are of this run on this machine; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from enclave.indexes.embedder import DenseEmbedder  # noqa: E402
from enclave.indexes.openvino_embedder import OpenVinoEmbedder  # noqa: E402
from enclave.indexes.retrieval_metrics import ndcg_at_k  # noqa: E402

CORPORA = Path(os.environ.get("ENCLAVE_TEST_CORPORA", Path(__file__).resolve().parents[2] / "shared" / "corpora"))
SCIFACT = CORPORA / "scifact"


def load_scifact() -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    corpus = {}
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            corpus[doc["_id"]] = (doc.get("title", "") + " " + doc["text"]).strip()
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
        queries = {q["_id"]: q["text"] for q in map(json.loads, f)}
    qrels: dict[str, dict[str, int]] = {}
    with open(SCIFACT / "qrels" / "test.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, score = line.split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    return corpus, {qid: queries[qid] for qid in qrels}, qrels


def throughput(backends: dict[str, object], texts: list[str], batch_size: int, reps: int) -> dict[str, float]:
    rates: dict[str, list[float]] = {name: [] for name in backends}
    for embedder in backends.values():
        embedder.batch_size = batch_size
        embedder.embed(texts[: 2 * batch_size])  # warm-up: first-shape compilation, allocator, caches
    for _ in range(reps):
        for name, embedder in backends.items():
            start = time.perf_counter()
            embedder.embed(texts)
            rates[name].append(len(texts) / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--texts", type=int, default=512, help="texts for the throughput runs")
    args.add_argument("--reps", type=int, default=3, help="timed repetitions per backend and batch size")
    args.add_argument("--docs", type=int, default=0, help="ranking corpus size; 0: the whole corpus")
    args.add_argument("--seed", type=int, default=13)
    args.add_argument("--part", choices=["both", "throughput", "rankings"], default="both", help="(a), (b) or both")
    options = args.parse_args()

    corpus, queries, qrels = load_scifact()
    torch_embedder = DenseEmbedder(batch_size=16)
    _ = torch_embedder.model
    with tempfile.TemporaryDirectory(prefix="enclave-ov-bench-") as cache:
        ov_embedder = OpenVinoEmbedder(batch_size=16, cache_dir=cache)
        start = time.perf_counter()
        _ = ov_embedder.compiled
        print(f"OpenVINO: model converted, cached and compiled in {time.perf_counter() - start:.1f} s "
              f"(fp32 IR; later processes read it from the cache)")
        backends = {"torch": torch_embedder, "openvino": ov_embedder}

        if options.part != "rankings":
            run_throughput(backends, corpus, options)
        if options.part != "throughput":
            run_rankings(backends, corpus, queries, qrels, options)


def run_throughput(backends: dict[str, object], corpus: dict[str, str], options: argparse.Namespace) -> None:
    torch_embedder = backends["torch"]
    full = [t for t in corpus.values() if torch_embedder.count_tokens(t) >= torch_embedder.max_tokens]
    texts = full[: options.texts]
    print(f"\n(a) throughput: {len(texts)} SciFact abstracts of >= {torch_embedder.max_tokens} word pieces "
          f"(truncated to 256 with [CLS]/[SEP]); warm-up, then {options.reps} interleaved repetitions each")
    rows = []
    for batch_size in (8, 16):
        rates = throughput(backends, texts, batch_size, options.reps)
        rows.append((batch_size, rates["torch"], rates["openvino"]))
    print("\n| batch size | torch chunks/s | openvino chunks/s | openvino / torch |")
    print("|---:|---:|---:|---:|")
    for batch_size, t, o in rows:
        print(f"| {batch_size} | {t:.1f} | {o:.1f} | {o / t:.2f}x |")


def run_rankings(backends: dict[str, object], corpus: dict[str, str], queries: dict[str, str],
                 qrels: dict[str, dict[str, int]], options: argparse.Namespace) -> None:
    ids = sorted(corpus)
    if options.docs and options.docs < len(ids):
        judged = sorted({d for rel in qrels.values() for d in rel if d in corpus})
        rest = sorted(set(ids) - set(judged))
        ids = sorted(judged + random.Random(options.seed).sample(rest, max(options.docs - len(judged), 0)))
        which = f"{len(judged)} judged documents + a random sample (seed {options.seed}): {len(ids)} documents"
    else:
        which = f"the whole corpus: {len(ids)} documents"
    print(f"\n(b) rankings: {len(queries)} test queries, exact dot-product search over {which}")
    docs = [corpus[i] for i in ids]
    qids = sorted(queries)
    vectors, seconds = {}, {}
    for name, embedder in backends.items():
        embedder.batch_size = 16
        start = time.perf_counter()
        vectors[name] = (embedder.embed(docs), embedder.embed_query([queries[q] for q in qids]))
        seconds[name] = time.perf_counter() - start
    top = {}
    for name, (doc_vectors, query_vectors) in vectors.items():
        scores = query_vectors @ doc_vectors.T
        top[name] = [[ids[j] for j in np.argsort(-row, kind="stable")[:10]] for row in scores]
    ndcg = {name: float(np.mean([ndcg_at_k(qrels[q], ranked, 10) for q, ranked in zip(qids, top[name])]))
            for name in backends}
    overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top["torch"], top["openvino"])]))
    same = float(np.mean([a == b for a, b in zip(top["torch"], top["openvino"])]))
    cos = np.sum(vectors["torch"][0] * vectors["openvino"][0], axis=1)
    print("\n| backend | nDCG@10 | top-10 overlap with torch | identical top-10 lists | embed corpus + queries (s) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| torch | {ndcg['torch']:.4f} | 1.000 | 1.000 | {seconds['torch']:.0f} |")
    print(f"| openvino | {ndcg['openvino']:.4f} | {overlap:.3f} | {same:.3f} | {seconds['openvino']:.0f} |")
    print(f"\nlargest cosine distance between the backends' vectors of one document: {1 - cos.min():.2e}")


if __name__ == "__main__":
    main()
