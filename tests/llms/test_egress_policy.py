"""llms.egress_policy: labels above the limit never leave, unknown labels count as restricted, the call
is refused when no context may leave, and every outgoing text goes through the redactor."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from enclave.contracts import Classification
from enclave.llms.egress_policy import EgressPolicy
from enclave.llms.egress_policy import (
    OutgoingPassage as Chunk,  # a labelled passage, as a test builds one
)


def _chunks(labels):
    return [Chunk(f"c{i}", f"title-{label}-{i}", f"section-{i}", f"CANARY-{label.upper()}-{i} body", label)
            for i, label in enumerate(labels)]


@pytest.mark.parametrize("max_label", tuple(Classification))
def test_every_label_combination_keeps_exactly_the_allowed_passages(max_label):
    for labels in itertools.product(tuple(Classification), repeat=3):
        chunks = _chunks(labels)
        decision = EgressPolicy(max_label).inspect("q?", [], chunks)
        allowed = [c for c in chunks if Classification.rank(c.classification) <= Classification.rank(max_label)]
        assert decision.sent == tuple(c.id for c in allowed)
        assert set(decision.withheld) == {c.id for c in chunks} - set(decision.sent)
        assert decision.allowed == bool(allowed)
        outgoing = " ".join(f"{p.title} {p.section} {p.text}" for p in decision.passages)
        for c in chunks:
            assert (c.text in outgoing) == (c in allowed) and (c.title in outgoing) == (c in allowed)
        assert decision.passage_numbers == tuple(i + 1 for i, c in enumerate(chunks) if c in allowed)


def test_refusal_sends_nothing_and_says_why():
    decision = EgressPolicy("internal").inspect("What does the board minute say?", [{"role": "user", "content": "hi"}],
                                                _chunks(["restricted", "confidential"]))
    assert not decision.allowed and "above 'internal'" in decision.reason
    assert (decision.question, decision.history, decision.passages, decision.sent) == ("", (), (), ())
    assert decision.withheld == ("c0", "c1")


def test_no_context_at_all_may_leave_as_a_bare_question():
    decision = EgressPolicy("public").inspect("What is 2 + 2?", [], [])
    assert decision.allowed and decision.question == "What is 2 + 2?" and decision.passages == ()


@pytest.mark.parametrize("label", ["", None, "secret", "PUBLIC"])
def test_missing_or_unknown_labels_count_as_restricted(label):
    assert Classification.rank(label) == len(Classification) - 1
    decision = EgressPolicy("confidential").inspect("q", [], [Chunk("x", "t", "s", "text", label)])
    assert not decision.allowed and decision.withheld == ("x",)
    assert EgressPolicy("restricted").inspect("q", [], [Chunk("x", "t", "s", "text", label)]).allowed


def test_every_outgoing_text_is_redacted_and_counted():
    class EmailRedactor:
        def redact(self, text):
            hits = text.count("ola@halvard.no")
            return SimpleNamespace(text=text.replace("ola@halvard.no", "<EMAIL_ADDRESS>"),
                                   counts={"EMAIL_ADDRESS": hits} if hits else {})

    chunk = Chunk("c", "Mail from ola@halvard.no", "To ola@halvard.no", "Write to ola@halvard.no today.", "internal")
    decision = EgressPolicy("internal", redactor=EmailRedactor()).inspect(
        "Why did ola@halvard.no write?", [{"role": "assistant", "content": "ola@halvard.no said hi"}], [chunk])
    sent = decision.question + repr(decision.history) + repr(decision.passages)
    assert "ola@halvard.no" not in sent and sent.count("<EMAIL_ADDRESS>") == 5
    assert decision.redactions == {"EMAIL_ADDRESS": 5}


def test_an_unknown_maximum_label_is_refused():
    with pytest.raises(ValueError, match="max_label must be one of"):
        EgressPolicy("top-secret")
