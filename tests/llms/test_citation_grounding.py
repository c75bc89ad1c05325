"""llms.citation_grounding: a marker that points at a passage which does not hold its claim moves to the one
that does; right markers, weak claims and claims no passage supports are left as written."""

from __future__ import annotations

from dataclasses import dataclass

from enclave.llms.citation_grounding import ground_citations, support


@dataclass(frozen=True)
class P:
    title: str
    text: str
    section: str = ""


PASSAGES = [
    P("Confederation of the Rhine", "Napoleon established the Confederation of the Rhine as a French client state in 1806; "
                                    "it lasted until 1814."),
    P("Rhine", "The Rhine flows from the Swiss Alps to the North Sea."),
    P("Warranty", "All hardware products carry a standard warranty of 36 months."),
]


def test_a_wrong_number_moves_to_the_passage_that_holds_the_claim():
    text = "The Confederation of the Rhine lasted from 1806 until 1814 [3]."
    assert ground_citations(text, PASSAGES) == "The Confederation of the Rhine lasted from 1806 until 1814 [1]."
    # each claim is judged on its own: the second sentence keeps its right marker
    two = "It lasted until 1814 [2]. Products carry a warranty of 36 months [3]."
    assert ground_citations(two, PASSAGES) == "It lasted until 1814 [1]. Products carry a warranty of 36 months [3]."


def test_right_markers_weak_claims_and_unsupported_ones_stay():
    right = "The standard warranty is 36 months [3]."
    assert ground_citations(right, PASSAGES) == right
    assert ground_citations("Yes [2].", PASSAGES) == "Yes [2]."  # one content word: nothing to judge by
    unsupported = "Rollo became the first Duke of Normandy [2]."  # no passage holds it: nothing better to cite
    assert ground_citations(unsupported, PASSAGES) == unsupported
    # a group with one supporting passage is kept whole; an out-of-range number is not support
    assert ground_citations("The Rhine reaches the North Sea [1][2].", PASSAGES) == "The Rhine reaches the North Sea [1][2]."
    assert ground_citations("The Rhine flows to the North Sea [7].", PASSAGES) == "The Rhine flows to the North Sea [2]."
    assert ground_citations("Anything [1].", []) == "Anything [1]."


def test_support_is_the_share_of_content_words_held():
    assert support("warranty of 36 months", PASSAGES[2]) == 1.0
    assert support("warranty of 48 months", PASSAGES[2]) == 2 / 3
    assert support("the of and", PASSAGES[2]) == 0.0
