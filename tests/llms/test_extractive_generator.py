"""ExtractiveGenerator: the answer without a model, quoted and cited from the context passages."""

from __future__ import annotations

import re

import pytest

from enclave.contracts import GenerationRequest
from enclave.llms import ExtractiveGenerator
from enclave.llms.extractive_generator import NO_CONTEXT_ANSWER, NO_MODEL_NOTICE, split_sentences

BULLET = re.compile(r"^- (.+) \[(\d+)\]$")


def quoted(text: str) -> list[tuple[str, int]]:
    """(sentence, passage number) of each quoted line of an extractive answer, best first."""
    notice, _, body = text.partition("\n\n")
    assert notice == NO_MODEL_NOTICE
    lines = body.splitlines()
    matches = [BULLET.match(line) for line in lines]
    assert all(matches), f"not every line is a cited quote: {lines}"
    return [(m.group(1), int(m.group(2))) for m in matches]


@pytest.fixture
def manual(passage):
    return [
        passage("HX-400 Manual", "Overview",
                "The HX-400 is a centrifugal pump for clean water. It weighs 38 kilograms without water. "
                "The housing is cast from stainless steel."),
        passage("HX-400 Manual", "Maintenance",
                "## Seal replacement schedule\n\n"
                "Replace the impeller seal every 2,000 operating hours. Always drain the pump before opening it."),
        passage("Safety Sheet", "",
                "Wear gloves when handling the cleaning fluid. Keep children away from the pump room."),
    ]


def test_embeddings_pick_the_relevant_sentence_and_cite_its_passage(embedder, make_request, manual):
    generator = ExtractiveGenerator(embed=embedder.embed)

    generation = generator.run(make_request("How often must the seal on the impeller be changed?", manual))

    lines = quoted(generation.text)
    assert lines[0] == ("Replace the impeller seal every 2,000 operating hours.", 2)
    assert len(lines) == 3
    assert generation.generator == "extractive"
    assert generation.model == "extractive"
    assert generation.locality == "local"
    assert generation.tokens_in == generation.tokens_out == 0


def test_embeddings_cite_the_right_passage_for_another_question(embedder, make_request, manual):
    generator = ExtractiveGenerator(embed=embedder.embed, max_sentences=1)

    generation = generator.run(make_request("What protective equipment should I wear?", manual))

    assert quoted(generation.text) == [("Wear gloves when handling the cleaning fluid.", 3)]


def test_word_overlap_without_embeddings(make_request, manual):
    generator = ExtractiveGenerator(max_sentences=2)

    generation = generator.run(make_request("Without water, how many kilograms does it weigh?", manual))

    lines = quoted(generation.text)
    assert lines[0] == ("It weighs 38 kilograms without water.", 1)
    assert len(lines) == 2


def test_says_no_model_was_reachable(make_request, manual):
    generation = ExtractiveGenerator().run(make_request("What is the HX-400?", manual))

    assert generation.text.startswith(NO_MODEL_NOTICE + "\n\n")


def test_no_passages_says_the_documents_hold_nothing(embedder, make_request):
    generation = ExtractiveGenerator(embed=embedder.embed).run(make_request("Who founded the company?", []))

    assert generation.text == NO_CONTEXT_ANSWER and generation.abstained
    assert NO_MODEL_NOTICE not in generation.text
    assert generation.generator == "extractive"


def test_passages_with_only_fragments_count_as_no_context(make_request, passage):
    fragments = [passage("Table", "", "| a | b |\n\n# Heading only\n\nOK.")]

    generation = ExtractiveGenerator().run(make_request("What is in the table?", fragments))

    assert generation.text == NO_CONTEXT_ANSWER


def test_headings_are_not_quoted(make_request, manual):
    # the heading shares the most words with the question; it must still not be quoted
    generation = ExtractiveGenerator(max_sentences=10).run(
        make_request("What is the seal replacement schedule?", manual)
    )

    text = generation.text
    assert "Seal replacement schedule" not in text
    assert "#" not in text
    assert ("Replace the impeller seal every 2,000 operating hours.", 2) in quoted(text)
    assert len(quoted(text)) == 7  # every sentence of the three passages, and no heading


def test_text_right_under_a_heading_is_kept():
    # "## Specs\nThe pump ..." (no blank line after the heading) is common Markdown
    assert split_sentences("Intro text is here.\n## Specs\nThe pump weighs 40 kg. Mind the cable.") == [
        "Intro text is here.",
        "The pump weighs 40 kg.",
        "Mind the cable.",
    ]


def test_markdown_markers_are_removed_and_long_sentences_cut():
    sentences = split_sentences("- **Drain** the pump first\n- Open the `valve` now\n\n> Quoted warning text here.\n\n"
                                + "word " * 200)

    assert sentences[:3] == ["Drain the pump first", "Open the valve now", "Quoted warning text here."]
    assert len(sentences[3]) == 400
    assert sentences[3].endswith("…")


def test_max_sentences_limits_the_quotes(make_request, manual):
    generation = ExtractiveGenerator(max_sentences=1).run(make_request("pump", manual))

    assert len(quoted(generation.text)) == 1


def test_runs_on_a_request_built_by_hand(passage):
    request = GenerationRequest(
        question="What colour is the housing?",
        passages=[passage("Spec", "", "The housing is painted signal red.")],
        messages=[],
    )

    assert quoted(ExtractiveGenerator().run(request).text) == [("The housing is painted signal red.", 1)]


def test_the_passage_retrieval_ranked_first_outweighs_a_mere_word_match():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Scored:
        title: str
        section: str
        text: str
        score: float

    question = "What will there be at the family day?"
    top = Scored("family-day.eml", "", "There will be face painting and a petting zoo at the party.", 0.0333)
    lexical = Scored("novel.txt", "", "The family day there will be a quiet one at home, they said.", 0.0150)
    request = GenerationRequest(question, [top, lexical], [])
    # word overlap alone prefers the novel's sentence; weighted by retrieval (0.5 + 0.5 * 0.015/0.0333) it drops
    unweighted = ExtractiveGenerator(max_sentences=1).run(
        GenerationRequest(question, [Scored(p.title, "", p.text, 1.0) for p in (top, lexical)], []))
    assert unweighted.text.endswith("[2]")
    assert ExtractiveGenerator(max_sentences=1).run(request).text.endswith("face painting and a petting zoo at the party. [1]")


def test_abstains_when_no_sentence_is_close_to_the_question(embedder, make_request, manual):
    from enclave.contracts import AttemptOutcome
    from enclave.llms import FallbackRouter
    from enclave.llms.abstention import ABSTENTION_TEXT

    generator = ExtractiveGenerator(embed=embedder.embed, min_similarity=0.5)
    asked = make_request("Which football club won the league in 1998?", manual)
    refusal = generator.run(asked)
    assert refusal.text == ABSTENTION_TEXT and refusal.abstained
    # through the route: recognised from the text, as any generator's refusal is
    routed = FallbackRouter([generator]).run(asked)
    assert routed.abstained and routed.attempts[0].outcome == AttemptOutcome.ANSWERED
    answer = generator.run(make_request("How often must the seal on the impeller be changed?", manual))
    assert not answer.abstained and quoted(answer.text)[0][1] == 2
    # without embeddings it abstains only when no passage it would quote shares a key term with the question
    overlap = ExtractiveGenerator(min_similarity=0.99)
    assert overlap.run(asked).text == ABSTENTION_TEXT
    assert not overlap.run(make_request("How often is the impeller seal replaced?", manual)).abstained
