"""indexes.retrieval_metrics: nDCG, recall, MRR and hit rate at k, checked against trec_eval (pytrec_eval)."""

from __future__ import annotations

import math

import pytest
import pytrec_eval

from enclave.indexes.retrieval_metrics import (
    METRICS,
    hit_at_k,
    mrr_at_k,
    ndcg_at_k,
    per_query,
    recall_at_k,
    score_ranking,
)


def _filler(qid: str, count: int, start: int = 0) -> list[str]:
    """``count`` deterministic unjudged document ids for query ``qid``."""
    return [f"{qid}-filler-{i:03d}" for i in range(start, start + count)]


# Graded judgements (1 and 2, some judged non-relevant 0 or -1) and a hand-built run, each query
# exercising one corner: see the comment on each.
QRELS: dict[str, dict[str, int]] = {
    # graded, all relevant retrieved in the top 10 in a non-ideal order, judged non-relevant between
    "q1": {"d1": 2, "d2": 1, "d3": 1, "n1": 0, "n2": -1},
    # relevant documents exist, none retrieved
    "q2": {"a": 1, "b": 2},
    # the only relevant document at rank 11: nothing at 10, found at 100
    "q3": {"r": 2},
    # one relevant at rank 50, one at rank 105 (the run has 120 documents)
    "q4": {"early": 1, "late": 2},
    # 15 relevant documents, more than k = 10: recall@10 and the ideal DCG are capped by k
    "q5": {**{f"many-{i:02d}": 2 for i in range(5)}, **{f"many-{i:02d}": 1 for i in range(5, 15)}},
    # a grade-1 document at rank 1, the grade-2 one at rank 3
    "q6": {"low": 1, "high": 2},
    # first relevant at rank 5 after judged non-relevant ones
    "q7": {"x0": 0, "x1": 0, "x2": 0, "x3": 0, "hit": 1},
    # two grade-2 documents at ranks 2 and 7 among unjudged ones
    "q8": {"p": 2, "s": 2, "t": 1},
}

RANKING: dict[str, list[str]] = {
    "q1": ["d2", "n1", "d1", "n2", *_filler("q1", 3), "d3", *_filler("q1", 5, start=3)],
    "q2": _filler("q2", 20),
    "q3": [*_filler("q3", 10), "r", *_filler("q3", 9, start=10)],
    "q4": [*_filler("q4", 49), "early", *_filler("q4", 54, start=49), "late", *_filler("q4", 15, start=103)],
    "q5": [
        "many-07", "many-00", "q5-filler-000", "many-11", "many-03", "many-01", "q5-filler-001",
        "many-14", "many-05", "many-02", "many-09", "many-04", "q5-filler-002", "many-12",
    ],
    "q6": ["low", "q6-filler-000", "high", *_filler("q6", 4, start=1)],
    "q7": ["x0", "x1", "q7-filler-000", "x2", "hit", "x3"],
    "q8": ["q8-filler-000", "p", *_filler("q8", 4, start=1), "s", "q8-filler-005"],
}

TREC_MEASURES = {"ndcg_cut.10", "recall.10,100", "success.1,5,10"}
# our metric -> trec_eval's measure name in pytrec_eval's output
TREC_NAMES = {
    "ndcg@10": "ndcg_cut_10",
    "recall@10": "recall_10",
    "recall@100": "recall_100",
    "hit@1": "success_1",
    "hit@5": "success_5",
    "hit@10": "success_10",
}


def _trec_run(ranking: dict[str, list[str]], cut: int | None = None) -> dict[str, dict[str, float]]:
    """pytrec_eval's run format: strictly decreasing scores, so trec_eval's tie-breaking cannot matter."""
    return {
        qid: {doc: float(len(docs) - rank) for rank, doc in enumerate(docs[:cut])}
        for qid, docs in ranking.items()
    }


@pytest.fixture(scope="module")
def trec() -> dict[str, dict[str, float]]:
    """trec_eval's per-query values: TREC_MEASURES on the full run, recip_rank on the run cut at 10."""
    for measure in ("ndcg_cut", "recall", "success", "recip_rank"):
        assert measure in pytrec_eval.supported_measures
    full = pytrec_eval.RelevanceEvaluator(QRELS, TREC_MEASURES).evaluate(_trec_run(RANKING))
    cut = pytrec_eval.RelevanceEvaluator(QRELS, {"recip_rank"}).evaluate(_trec_run(RANKING, cut=10))
    assert set(full) == set(cut) == set(QRELS)
    return {qid: {**full[qid], "recip_rank_10": cut[qid]["recip_rank"]} for qid in QRELS}


def test_the_fixture_reaches_the_corners_it_is_meant_to() -> None:
    assert all(len(set(docs)) == len(docs) for docs in RANKING.values())
    assert len(RANKING["q4"]) >= 101 and RANKING["q4"].index("late") >= 100
    assert RANKING["q3"].index("r") == 10
    assert sum(rel > 0 for rel in QRELS["q5"].values()) > 10
    assert set(RANKING["q2"]).isdisjoint(QRELS["q2"])


@pytest.mark.parametrize("metric", [*TREC_NAMES, "mrr@10"])
def test_per_query_values_match_trec_eval(metric: str, trec: dict[str, dict[str, float]]) -> None:
    trec_name = TREC_NAMES.get(metric, "recip_rank_10")
    ours = per_query(QRELS, RANKING, metric)
    assert set(ours) == set(QRELS)
    for qid in QRELS:
        assert ours[qid] == pytest.approx(trec[qid][trec_name], abs=1e-9), qid


def test_means_match_trec_eval(trec: dict[str, dict[str, float]]) -> None:
    scores = score_ranking(QRELS, RANKING)
    assert list(scores) == list(METRICS)
    names = {**TREC_NAMES, "mrr@10": "recip_rank_10"}
    for metric in METRICS:
        expected = sum(trec[qid][names[metric]] for qid in QRELS) / len(QRELS)
        assert scores[metric] == pytest.approx(expected, abs=1e-9), metric


def test_the_fixture_gives_distinct_non_trivial_values(trec: dict[str, dict[str, float]]) -> None:
    # guards the comparison against a run where every metric is 0 or 1 and errors would not show
    assert 0.0 < trec["q1"]["ndcg_cut_10"] < 1.0
    assert trec["q3"]["recall_10"] == 0.0 and trec["q3"]["recall_100"] == 1.0
    assert trec["q4"]["recall_100"] == pytest.approx(0.5)
    assert trec["q5"]["recall_10"] < 1.0
    assert trec["q6"]["success_1"] == 1.0 and trec["q6"]["ndcg_cut_10"] < 1.0
    assert trec["q7"]["success_1"] == 0.0 and trec["q7"]["success_5"] == 1.0
    assert trec["q7"]["recip_rank_10"] == pytest.approx(0.2)


def test_ndcg_of_a_tiny_case_by_hand() -> None:
    relevances = {"a": 2, "b": 1, "c": 0}
    # ranked c, b, a -> DCG@3 = 0/log2(2) + 1/log2(3) + 2/log2(4) = 0.6309297535714575 + 1 = 1.6309...
    # ideal  a, b    -> IDCG@3 = 2/log2(2) + 1/log2(3)            = 2 + 0.6309297535714575 = 2.6309...
    # nDCG@3 = 1.6309297535714575 / 2.6309297535714575 = 0.6199...
    expected = (1 / math.log2(3) + 2 / 2) / (2 + 1 / math.log2(3))
    assert ndcg_at_k(relevances, ["c", "b", "a"], 3) == pytest.approx(expected, abs=1e-12)
    assert ndcg_at_k(relevances, ["c", "b", "a"], 3) == pytest.approx(0.6199, abs=1e-4)
    # cut at 2: DCG@2 = 1/log2(3); IDCG@2 is the same 2 + 1/log2(3)
    assert ndcg_at_k(relevances, ["c", "b", "a"], 2) == pytest.approx(
        (1 / math.log2(3)) / (2 + 1 / math.log2(3)), abs=1e-12
    )
    assert ndcg_at_k(relevances, ["a", "b", "c"], 3) == 1.0


def test_ideal_dcg_is_cut_at_k() -> None:
    # three grade-2 documents, k = 1: the ideal top 1 is one grade-2 document, so one at rank 1 is perfect
    relevances = {"a": 2, "b": 2, "c": 2}
    assert ndcg_at_k(relevances, ["a"], 1) == 1.0
    assert recall_at_k(relevances, ["a"], 1) == pytest.approx(1 / 3)


def test_a_repeated_document_counts_once_at_its_first_position() -> None:
    relevances = {"a": 2, "b": 1}
    with_repeats = ["a", "a", "x", "a", "b"]
    deduplicated = ["a", "x", "b"]
    for function in (ndcg_at_k, recall_at_k, mrr_at_k, hit_at_k):
        for k in (1, 2, 3, 5):
            assert function(relevances, with_repeats, k) == function(relevances, deduplicated, k), (function, k)
    # a repeated relevant document is not relevant twice
    assert recall_at_k({"a": 1, "b": 1}, ["a", "a"], 10) == 0.5
    assert ndcg_at_k({"a": 1}, ["a", "a", "a"], 10) == 1.0
    # the repeats take no rank: b is third, inside the top 3
    assert recall_at_k(relevances, with_repeats, 3) == 1.0
    # a relevant document's first position is the one that counts
    assert mrr_at_k({"b": 1}, ["x", "b", "y", "b"], 10) == 0.5


def test_unknown_metric_names_raise_value_error_naming_the_valid_ones() -> None:
    for bad in ("map@10", "ndcg", "ndcg@", "ndcg@0", "ndcg@ten", "ndcg@-1", "NDCG@10", "ndcg@10@10"):
        with pytest.raises(ValueError, match=r"ndcg@<k>, recall@<k>, mrr@<k>, hit@<k>"):
            score_ranking(QRELS, RANKING, ["recall@10", bad])
        with pytest.raises(ValueError, match="valid metrics"):
            per_query(QRELS, RANKING, bad)


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_a_cut_off_that_is_not_a_positive_integer_raises(k: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        ndcg_at_k({"a": 1}, ["a"], k)  # type: ignore[arg-type]


def test_a_query_absent_from_the_ranking_scores_zero_in_the_mean() -> None:
    qrels = {"found": {"a": 1}, "missing": {"b": 1}}
    ranking = {"found": ["a"], "not-judged": ["b"]}
    assert per_query(qrels, ranking, "hit@1") == {"found": 1.0, "missing": 0.0}
    scores = score_ranking(qrels, ranking)
    assert all(scores[metric] == 0.5 for metric in METRICS), scores


def test_a_query_without_relevant_documents_is_left_out_of_the_mean() -> None:
    qrels = {"judged": {"a": 1}, "nothing-relevant": {"b": 0, "c": -1}, "empty": {}}
    ranking = {"judged": ["a"], "nothing-relevant": ["b", "c"], "empty": ["d"]}
    assert score_ranking(qrels, ranking) == {metric: 1.0 for metric in METRICS}
    assert per_query(qrels, ranking, "ndcg@10") == {"judged": 1.0}


def test_no_query_with_a_relevant_document_raises() -> None:
    with pytest.raises(ValueError, match="no query in qrels has a relevant document"):
        score_ranking({"q": {"a": 0}}, {"q": ["a"]})
    assert per_query({"q": {"a": 0}}, {"q": ["a"]}, "ndcg@10") == {}


def test_no_relevant_document_scores_zero_for_each_function() -> None:
    for function in (ndcg_at_k, recall_at_k, mrr_at_k, hit_at_k):
        assert function({"a": 0}, ["a", "b"], 10) == 0.0, function
        assert function({}, [], 10) == 0.0, function


def test_the_module_docstring_example() -> None:
    qrels = {"q1": {"leave.md": 2, "travel.md": 1}, "q2": {"payroll.xlsx": 1}}
    ranking = {"q1": ["travel.md", "faq.md", "leave.md"], "q2": ["faq.md"]}
    scores = score_ranking(qrels, ranking)
    # q1: DCG = 1/log2(2) + 2/log2(4) = 2, IDCG = 2 + 1/log2(3); q2: 0
    assert scores["ndcg@10"] == pytest.approx(2 / (2 + 1 / math.log2(3)) / 2, abs=1e-12)
    assert scores["recall@10"] == 0.5
    assert score_ranking(qrels, ranking, ["mrr@10"]) == {"mrr@10": 0.5}
    assert per_query(qrels, ranking, "hit@1") == {"q1": 1.0, "q2": 0.0}
