"""llms.abstention: a generator's refusal recognised in the forms models write it, and the gate that
abstains from retrieval alone (no passage, no shared key term, a best score under the threshold)."""

from __future__ import annotations

import pytest

from enclave.contracts import ScoredChunk
from enclave.llms.abstention import ABSTENTION_TEXT, AbstentionGate, is_abstention, key_terms


@pytest.mark.parametrize("text", [
    ABSTENTION_TEXT,
    "The documents do not answer this question.\n[1]",  # a small model's stray marker after it
    "The provided documents do not contain the answer.",
    "The passages don't mention who designed the castle.",
    "There is no information about the 2023 figures in the documents.",
    "I cannot answer this from the passages provided.",
    "The answer is not mentioned in the provided context.",
    "[2]",  # a bare citation says nothing
    "",
])
def test_refusals_are_recognised(text):
    assert is_abstention(text)


@pytest.mark.parametrize("text", [
    "Employees earn 2.25 days of paid leave per month [1].",
    "Rollo [2]",
    "The HX-400 works from -40 to 125 °C [1]. The passages do not mention its weight.",  # answers first
    "No later than 31 March, or the days lapse [3].",
])
def test_answers_are_not_refusals(text):
    assert not is_abstention(text)


def _chunk(text: str, score: float = 0.5, title: str = "Handbook") -> ScoredChunk:
    return ScoredChunk(id="p", score=score, text=text, doc_id="s:d", source="s", title=title, uri="file:///d",
                       section="", chunk=0, classification="internal", groups=("everyone",))


def test_key_terms_drop_function_words_and_fold_endings():
    assert key_terms("When was the company founded?") == {"compan", "founde"}
    assert key_terms("founding of the company") == {"foundi", "compan"}  # "found" stems differ past 6 letters
    assert key_terms("What is it?") == set()


def test_gate_abstains_without_passages_or_shared_terms():
    gate = AbstentionGate()
    assert "no passage" in gate.run("How many leave days?", [])
    off_topic = [_chunk("The TX-220 transmitter measures temperature to 0.08 degrees.")]
    assert "key terms" in gate.run("Which dental insurer covers the staff pension plan?", off_topic)
    on_topic = [_chunk("Employees accrue 2.25 days of paid leave per month.")]
    assert gate.run("How many days of paid leave do employees earn?", on_topic) is None
    assert gate.run("What is it?", off_topic) is None  # no key term to judge by: the generator decides


def test_gate_min_score():
    passages = [_chunk("Employees accrue 2.25 days of paid leave per month.", score=0.2)]
    assert "under 0.3" in AbstentionGate(min_score=0.3).run("How many days of paid leave?", passages)
    assert AbstentionGate(min_score=0.1).run("How many days of paid leave?", passages) is None
