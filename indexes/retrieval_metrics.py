"""Ranking quality of a retriever against relevance judgements: nDCG, recall, MRR and hit rate at k.

The definitions are those of trec_eval (https://github.com/usnistgov/trec_eval), so numbers here
can be compared with published ones; the tests check them against ``pytrec_eval``:

- ``ndcg@k`` is trec_eval's ``ndcg_cut.k``: normalised discounted cumulative gain (Järvelin &
  Kekäläinen, "Cumulated gain-based evaluation of IR techniques", ACM TOIS 20(4), 2002). The gain
  of a document is its graded relevance (linear, not ``2**rel - 1``), discounted by
  ``1 / log2(rank + 1)``; the ideal DCG ranks the judged relevances in descending order, cut at k.
- ``recall@k`` is trec_eval's ``recall.k``: relevant documents in the top k / all relevant ones.
- ``mrr@k`` is trec_eval's ``recip_rank`` on a ranking cut at k: 1 / rank of the first relevant
  document in the top k, else 0 (averaged over queries it is the mean reciprocal rank).
- ``hit@k`` is trec_eval's ``success.k``: 1 if any relevant document is in the top k, else 0.

A document is relevant when its judged relevance is > 0; documents judged <= 0 and documents not
judged at all give no gain. If a ranking lists a document more than once, only its first position
counts: later repeats are dropped before cutting at k (as when chunk hits are mapped to their
documents, each document keeping its best rank).

Usage::

    qrels = {"q1": {"leave.md": 2, "travel.md": 1}, "q2": {"payroll.xlsx": 1}}
    ranking = {"q1": ["travel.md", "faq.md", "leave.md"], "q2": ["faq.md"]}
    score_ranking(qrels, ranking)               # {"ndcg@10": 0.380..., "recall@10": 0.5, ...}
    score_ranking(qrels, ranking, ["mrr@10"])   # {"mrr@10": 0.5}
    per_query(qrels, ranking, "hit@1")          # {"q1": 1.0, "q2": 0.0}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

#: Query id -> {document id: graded relevance}; relevance > 0 means relevant.
Qrels = Mapping[str, Mapping[str, int]]
#: Query id -> document ids, best first.
Ranking = Mapping[str, Sequence[str]]

#: The metrics ``score_ranking`` reports by default.
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "hit@1", "hit@5", "hit@10")


def _top_k(ranked: Sequence[str], k: int) -> list[str]:
    """The first ``k`` distinct documents of ``ranked``, each at its first position."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    seen: set[str] = set()
    top: list[str] = []
    for doc in ranked:
        if doc not in seen:
            seen.add(doc)
            top.append(doc)
            if len(top) == k:
                break
    return top


def _discount(rank: int) -> float:
    """``1 / log2(rank + 1)`` for a 1-based rank."""
    return 1.0 / math.log2(rank + 1)


def ndcg_at_k(relevances: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """Normalised discounted cumulative gain of the top ``k`` of ``ranked`` (trec_eval ``ndcg_cut.k``).

    ``relevances`` maps document ids to graded relevance (absent or <= 0: no gain); ``ranked`` is
    document ids, best first. DCG = sum of ``rel / log2(rank + 1)`` over the top k; it is divided
    by the DCG of the ideal ranking (the positive relevances sorted descending, cut at k).

    Returns a float in [0, 1]; 0.0 when no document is relevant. Raises ValueError if ``k`` is
    not a positive integer.
    """
    top = _top_k(ranked, k)
    dcg = 0.0
    for rank, doc in enumerate(top, start=1):
        rel = relevances.get(doc, 0)
        if rel > 0:
            dcg += rel * _discount(rank)
    ideal = sorted((rel for rel in relevances.values() if rel > 0), reverse=True)[:k]
    idcg = sum(rel * _discount(rank) for rank, rel in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(relevances: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """Relevant documents in the top ``k`` of ``ranked`` / all relevant ones (trec_eval ``recall.k``).

    Arguments as for ``ndcg_at_k``. Returns a float in [0, 1]; 0.0 when no document is relevant
    (so below 1 whenever more documents are relevant than k). Raises ValueError if ``k`` is not a
    positive integer.
    """
    top = _top_k(ranked, k)
    relevant = sum(1 for rel in relevances.values() if rel > 0)
    if relevant == 0:
        return 0.0
    found = sum(1 for doc in top if relevances.get(doc, 0) > 0)
    return found / relevant


def mrr_at_k(relevances: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """Reciprocal rank of the first relevant document in the top ``k`` (trec_eval ``recip_rank``, cut at k).

    Arguments as for ``ndcg_at_k``. Returns ``1 / rank`` (rank 1-based), a float in [0, 1]; 0.0 if
    no relevant document is in the top k. Raises ValueError if ``k`` is not a positive integer.
    """
    for rank, doc in enumerate(_top_k(ranked, k), start=1):
        if relevances.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def hit_at_k(relevances: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """1.0 if any relevant document is in the top ``k`` of ``ranked``, else 0.0 (trec_eval ``success.k``).

    Arguments as for ``ndcg_at_k``. Raises ValueError if ``k`` is not a positive integer.
    """
    return 1.0 if any(relevances.get(doc, 0) > 0 for doc in _top_k(ranked, k)) else 0.0


_METRIC_FUNCTIONS: dict[str, Callable[[Mapping[str, int], Sequence[str], int], float]] = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "mrr": mrr_at_k,
    "hit": hit_at_k,
}


def _parse_metric(metric: str) -> tuple[Callable[[Mapping[str, int], Sequence[str], int], float], int]:
    """The function and cut-off of a metric named ``"<name>@<k>"``; ValueError if it is not one."""
    name, at, cutoff = metric.partition("@")
    valid = ", ".join(f"{known}@<k>" for known in _METRIC_FUNCTIONS)
    well_formed = at and name in _METRIC_FUNCTIONS and cutoff.isascii() and cutoff.isdigit()
    if not well_formed or int(cutoff) < 1:
        raise ValueError(f"unknown metric {metric!r}: valid metrics are {valid} with k a positive integer")
    return _METRIC_FUNCTIONS[name], int(cutoff)


def _judged_queries(qrels: Qrels) -> list[str]:
    """Query ids of ``qrels`` with at least one relevant document, in ``qrels``' order."""
    return [qid for qid, rels in qrels.items() if any(rel > 0 for rel in rels.values())]


def per_query(qrels: Qrels, ranking: Ranking, metric: str) -> dict[str, float]:
    """``metric`` (e.g. ``"ndcg@10"``) of each query of ``qrels`` that has a relevant document.

    ``qrels``: query id -> {doc id: graded relevance}; ``ranking``: query id -> doc ids, best first.
    Returns query id -> value in [0, 1]; a query absent from ``ranking`` scores 0.0, queries of
    ``ranking`` absent from ``qrels`` are ignored, and queries with no relevant document are left
    out (no ranking can be judged on them). Raises ValueError for a metric name that is not
    ``"<name>@<k>"`` with name in ndcg, recall, mrr, hit and k a positive integer.
    """
    function, k = _parse_metric(metric)
    return {qid: function(qrels[qid], ranking.get(qid, ()), k) for qid in _judged_queries(qrels)}


def score_ranking(qrels: Qrels, ranking: Ranking, metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Mean of each of ``metrics`` over the queries of ``qrels`` that have a relevant document.

    ``qrels``: query id -> {doc id: graded relevance}; ``ranking``: query id -> doc ids, best first.
    Returns metric name -> mean in [0, 1], in the order of ``metrics``; a query absent from
    ``ranking`` counts as 0.0, queries of ``ranking`` absent from ``qrels`` are ignored (see
    ``per_query``). Raises ValueError for an unknown metric name, and if no query of ``qrels`` has
    a relevant document (the mean would be undefined).
    """
    parsed = [_parse_metric(metric) for metric in metrics]
    queries = _judged_queries(qrels)
    if not queries:
        raise ValueError("no query in qrels has a relevant document (relevance > 0): nothing to score")
    scores: dict[str, float] = {}
    for metric, (function, k) in zip(metrics, parsed, strict=True):
        values = [function(qrels[qid], ranking.get(qid, ()), k) for qid in queries]
        scores[metric] = math.fsum(values) / len(values)
    return scores
