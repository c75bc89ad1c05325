"""flows.answer_metrics: SQuAD's exact match and token F1 (the official v2.0 script's normalisation),
containment, and the citation and abstention shares, on answers whose scores are worked out by hand."""

from __future__ import annotations

import pytest

from enclave.flows.answer_metrics import (
    answer_body,
    contains_answer,
    exact_match,
    judge_answer,
    normalize_answer,
    score_answers,
    token_f1,
)
from enclave.llms.extractive_generator import NO_MODEL_NOTICE


def test_normalisation_is_squads():
    assert normalize_answer("The  Normans!") == "normans"
    assert normalize_answer("an Apple, a pear and THE plum.") == "apple pear and plum"
    assert normalize_answer("10th-11th") == "10th11th"  # punctuation is dropped, not turned into spaces
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_exact_match_and_token_f1_take_the_best_gold():
    golds = ["10th and 11th centuries", "in the 10th and 11th centuries"]
    assert exact_match("In the 10th and 11th centuries.", golds) == 1.0
    assert exact_match("the 10th century", golds) == 0.0
    # "10th century" vs "10th and 11th centuries": 1 common token; P = 1/2, R = 1/4 -> F1 = 1/3
    assert token_f1("10th century", golds) == pytest.approx(1 / 3)
    assert token_f1("France", ["France"]) == 1.0
    assert token_f1("anything", []) == 0.0 and exact_match("anything", []) == 0.0
    assert token_f1("the", ["a"]) == 1.0  # both normalise to nothing: equal, as in the official script


def test_containment_is_on_word_boundaries():
    assert contains_answer("Normandy is a region in France [1].", ["france"])
    assert not contains_answer("It is in Francedom.", ["France"])
    assert contains_answer("The limit is NOK 250.", ["NOK 250"])


def test_answer_body_drops_markers_and_the_extractive_notice():
    text = f"{NO_MODEL_NOTICE}\n\n- Rollo was a Viking [1].\n- He was baptised [2]."
    assert answer_body(text) == "Rollo was a Viking . He was baptised ."
    assert exact_match("Rollo [3]", ["Rollo"]) == 0.0  # exact match is on the body, which judge_answer makes
    judged = judge_answer("q", "Rollo [3]", True, ["Rollo"], [], [], first_token_seconds=0.1, total_seconds=0.2)
    assert judged.exact_match == 1.0 and judged.token_f1 == 1.0


def _judge(qid, text, answered, golds, cited, gold_docs=("gold",), seconds=1.0):
    return judge_answer(qid, text, answered, golds, cited, list(gold_docs), first_token_seconds=seconds / 2,
                        total_seconds=seconds, tokens_in=100, tokens_out=10, cost=0.001)


def test_scores_over_a_mixed_set():
    judged = [
        # answerable, right, cites the gold passage and an unrelated one: 1 of 2 citations supports
        _judge("a1", "It is France [1][2].", True, ["France"], [("gold", "Normandy, in France"), ("other", "Rhine")]),
        # answerable, wrong, cites a passage holding the gold answer from another document: supported
        _judge("a2", "Germany [1].", True, ["Basel"], [("other", "The knee is at Basel")]),
        # answerable but refused
        _judge("a3", "The documents do not answer this question.", False, ["1066"], []),
        # unanswerable and refused; unanswerable and answered anyway
        _judge("u1", "The documents do not answer this question.", False, [], []),
        _judge("u2", "Rollo [1].", True, [], [("gold", "Rollo ruled")], seconds=3.0),
    ]
    scores = score_answers(judged)
    assert scores["exact_match"] == 0.0  # "It is France" is not exactly "France"
    assert scores["token_f1"] == pytest.approx(round(0.5 / 3, 4))  # a1: "it is france", P 1/3, R 1 -> F1 1/2
    assert scores["contains"] == pytest.approx(round(1 / 3, 4))
    assert scores["citation_precision"] == pytest.approx(round(2 / 3, 4))  # a1: 1 of 2, a2: 1 of 1
    assert scores["citation_recall"] == pytest.approx(round(2 / 3, 4))  # a1 and a2 cite a supporting passage
    assert scores["abstention_precision"] == 0.5  # two refusals, one on an unanswerable question
    assert scores["abstention_recall"] == 0.5  # u1 of u1, u2
    assert scores["wrongly_refused"] == pytest.approx(round(1 / 3, 4))
    assert scores["squad2_f1"] == pytest.approx(round((judged[0].token_f1 + 0 + 0 + 1 + 0) / 5, 4))
    assert scores["failed"] == 0.0
    assert scores["total_p50_s"] == 1.0 and scores["first_token_p50_s"] == 0.5
    assert scores["tokens_in"] == 100 and scores["cost_usd"] == pytest.approx(0.001)


def test_failed_questions_count_apart():
    judged = [_judge("a1", "France [1]", True, ["France"], [("gold", "France")])]
    failed = judge_answer("a2", "", False, ["x"], [], [], first_token_seconds=9.0, total_seconds=9.0)
    judged.append(type(failed)(**{**failed.__dict__, "failed": True}))
    scores = score_answers(judged)
    assert scores["failed"] == 0.5
    assert scores["exact_match"] == 1.0 and scores["wrongly_refused"] == 0.0  # the failure is not a refusal
    assert scores["total_p95_s"] == 1.0
