"""The answer path on the example corpus: every question in examples/questions.yaml cites its file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from settings_files import write_settings

from enclave.flows import answer, cited_numbers

QUESTIONS_FILE = Path(__file__).resolve().parents[2] / "examples" / "questions.yaml"
QUESTIONS = yaml.safe_load(QUESTIONS_FILE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", QUESTIONS, ids=[q["source"] for q in QUESTIONS])
def test_each_question_cites_the_file_that_answers_it(halvard_pipeline, case):
    result = halvard_pipeline.ask(case["question"], groups=["everyone"])
    assert any(c.uri.endswith("/" + case["source"]) for c in result.citations), (
        case["source"], [c.uri for c in result.citations], result.text)


def test_extractive_answers_quote_the_fact_for_most_questions(halvard_pipeline):
    # the extractive generator ranks sentences by embedding similarity alone, so a title-like sentence
    # can outrank the fact; this guards the rate (13 of 14 when written) against regressions
    misses = [case["source"] for case in QUESTIONS
              if case["answer_contains"] not in halvard_pipeline.ask(case["question"], groups=["everyone"]).text]
    assert len(misses) <= 2, misses


def test_cited_numbers_ignores_out_of_range_and_repeats():
    assert cited_numbers("a [2] b [1][2] c [9] d [0]", passages=3) == [1, 2]
    assert cited_numbers("no markers", passages=3) == []


def test_answer_flow_answers_a_batch(halvard_settings, tmp_path, embedder):
    # the session's index is held open by its pipeline; the flow opens its own copy of the settings' index
    from enclave.flows import IngestPipeline

    settings = halvard_settings.model_copy(update={"data_dir": tmp_path / "data",
                                                   "sources": halvard_settings.sources[:1]})
    with IngestPipeline.from_settings(settings, embedder=embedder) as pipeline:
        pipeline.run("halvard")
    answers = answer(["How long is the standard warranty?", "What is the minimum length for a password?"],
                     groups=["everyone"], config_file=write_settings(settings, tmp_path))
    assert [a.question for a in answers] == ["How long is the standard warranty?",
                                             "What is the minimum length for a password?"]
    assert "36" in answers[0].text and "14 characters" in answers[1].text
    assert all(a.citations for a in answers)


def test_no_groups_sees_nothing(halvard_pipeline):
    result = halvard_pipeline.ask("How long is the standard warranty?", groups=[])
    assert result.passages == [] and result.citations == []
    assert "do not contain anything relevant" in result.text
