"""The egress policy: what may leave for an external generator, decided before the call (fail closed).

Labels are ordered ``public < internal < confidential < restricted`` ([Classification][enclave.contracts.Classification]).
An external generator has a maximum label it may receive. Before calling it, the policy inspects
everything that would be sent: the question, the chat history, and each context passage with its
label. Passages above the maximum are withheld, and so is any passage whose label is missing or
unknown (it counts as ``restricted``). If passages were retrieved but none may leave, the call is
refused: the question needs context the external model may not see, so a local generator must
answer. Whatever is sent can first be redacted of PII (see [PiiRedactor][enclave.llms.PiiRedactor]):
question, history, and each passage's title, section and text. The [EgressGuard][enclave.llms.EgressGuard]
applies the decision to a call and audits it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from enclave.contracts import Classification


class LabelledPassage(Protocol):
    """What the policy needs of a passage ([ScoredChunk][enclave.contracts.ScoredChunk] has it)."""

    id: str
    title: str
    section: str
    text: str
    classification: str


@dataclass(frozen=True)
class OutgoingPassage:
    """A passage as it may leave: its id, label and redacted title, section and text."""

    id: str
    title: str
    section: str
    text: str
    classification: str


class Redacted(Protocol):
    text: str
    counts: dict[str, int]


class Redactor(Protocol):
    """What the policy needs of a redactor ([PiiRedactor][enclave.llms.PiiRedactor] has it)."""

    def redact(self, text: str) -> Redacted:
        """``text`` with PII replaced, and the spans replaced by entity type."""


@dataclass(frozen=True)
class EgressDecision:
    """The policy's verdict on one external call.

    ``allowed``: whether the call may be made; ``reason`` says why not (empty when allowed).
    ``question``, ``history`` and ``passages`` are what may be sent, redacted; ``passage_numbers``
    gives, for each outgoing passage, its 1-based number in the original context (to map the
    external answer's ``[n]`` citations back). ``sent`` / ``withheld`` are chunk ids;
    ``redactions`` counts redacted spans by entity type over everything sent.
    """

    allowed: bool
    reason: str
    question: str
    history: tuple[dict[str, str], ...]
    passages: tuple[OutgoingPassage, ...]
    passage_numbers: tuple[int, ...]
    sent: tuple[str, ...]
    withheld: tuple[str, ...]
    redactions: dict[str, int] = field(default_factory=dict)


class EgressPolicy:
    """Decides what an external generator may receive.

    Usage::

        policy = EgressPolicy(max_label="internal", redactor=PiiRedactor())
        decision = policy.inspect(question, history, passages)   # passages: ScoredChunk-like, with labels
        if decision.allowed:
            send(decision.question, decision.history, decision.passages)
        else:
            answer_locally(because=decision.reason)

    ``max_label`` is the highest label the generator may receive (a
    [Classification][enclave.contracts.Classification]; raises ValueError for anything else).
    ``redactor`` (optional) is applied to every text that would leave.
    """

    def __init__(self, max_label: str = "internal", redactor: Redactor | None = None) -> None:
        if max_label not in tuple(Classification):
            raise ValueError(f"max_label must be one of {', '.join(Classification)}, not {max_label!r}")
        self.max_label = Classification(max_label)
        self.redactor = redactor

    def inspect(
        self, question: str, history: Sequence[dict[str, str]], passages: Sequence[LabelledPassage]
    ) -> EgressDecision:
        """The decision for sending ``question``, ``history`` (chat messages: role, content) and
        ``passages`` to an external generator."""
        limit = Classification.rank(self.max_label)

        def label(passage: LabelledPassage) -> str | None:
            return getattr(passage, "classification", None)  # none at all: restricted, like an unknown one

        kept = [(n, p) for n, p in enumerate(passages, start=1) if Classification.rank(label(p)) <= limit]
        withheld = tuple(getattr(p, "id", "") for p in passages if Classification.rank(label(p)) > limit)
        if passages and not kept:
            reason = (f"all {len(passages)} passages are labelled above '{self.max_label}', the most this "
                      "generator may receive; the answer needs them, so it stays local")
            return EgressDecision(False, reason, "", (), (), (), (), withheld)
        counts: Counter[str] = Counter()

        def clean(text: str) -> str:
            if self.redactor is None or not text:
                return text
            redacted = self.redactor.redact(text)
            counts.update(redacted.counts)
            return redacted.text

        outgoing = tuple(
            OutgoingPassage(getattr(p, "id", ""), clean(p.title), clean(p.section), clean(p.text), label(p))
            for _, p in kept
        )
        history_out = tuple({"role": m["role"], "content": clean(m.get("content", ""))} for m in history)
        return EgressDecision(
            allowed=True, reason="", question=clean(question), history=history_out, passages=outgoing,
            passage_numbers=tuple(n for n, _ in kept), sent=tuple(getattr(p, "id", "") for _, p in kept),
            withheld=withheld,
            redactions=dict(counts),
        )
