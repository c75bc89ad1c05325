"""An external generator behind the egress policy: it receives only what may leave, and every call is audited.

Before each call the [EgressPolicy][enclave.llms.EgressPolicy] inspects the question, the history and
every passage with its label: passages above the generator's label are withheld (the rest renumbered
from 1, and the answer's citations mapped back), PII is redacted; if nothing may leave for a question
that needs context, the call is not made. Every call, made or refused, leaves an
[AuditRecord][enclave.llms.AuditRecord].
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence

from enclave.contracts import AttemptOutcome, GenerationRequest, Generator, GeneratorUnavailable, Usage
from enclave.llms.audit_log import AuditLog, AuditRecord, now_iso
from enclave.llms.cost_table import CostTable
from enclave.llms.egress_policy import EgressDecision, EgressPolicy
from enclave.llms.generator import WrappedGenerator, with_text
from enclave.prompts import answer_messages

_CITATION = re.compile(r"\[(\d+)\]")


class EgressRefused(GeneratorUnavailable):
    """The egress policy kept the request local: the generator was not called (outcome ``not_sent``)."""

    outcome = AttemptOutcome.NOT_SENT


class CitationRenumbering:
    """Maps citations ``[k]`` of an answer written from the outgoing passages back to the original
    passage numbers, as it streams: a trailing ``[12`` is held back until its ``]`` arrives.

    Usage::

        renumber = CitationRenumbering([1, 3])     # outgoing passage k was original passage numbers[k-1]
        renumber.feed("Costs NOK 12,000 [") + renumber.feed("1]. Ask [2].") + renumber.flush()
        # "Costs NOK 12,000 [1]. Ask [3]."
    """

    def __init__(self, numbers: Sequence[int]) -> None:
        self.numbers = list(numbers)
        self.pending = ""

    def _map(self, match: re.Match) -> str:
        k = int(match.group(1))
        return f"[{self.numbers[k - 1]}]" if 1 <= k <= len(self.numbers) else match.group(0)

    def feed(self, text: str) -> str:
        """The part of ``pending + text`` that can be shown now, renumbered."""
        text, self.pending = self.pending + text, ""
        cut = text.rfind("[")
        if cut != -1 and (text[cut + 1:] == "" or text[cut + 1:].isdigit()):
            text, self.pending = text[:cut], text[cut:]  # maybe the start of a citation: wait for the rest
        return _CITATION.sub(self._map, text)

    def flush(self) -> str:
        """What was held back, at the end of the answer."""
        text, self.pending = self.pending, ""
        return _CITATION.sub(self._map, text)


class EgressGuard(WrappedGenerator):
    """Wraps an external [Generator][enclave.contracts.Generator] in an [EgressPolicy][enclave.llms.EgressPolicy].

    Usage::

        guarded = EgressGuard(OpenAIGenerator("gpt-4o-mini", api_key=key),
                              EgressPolicy("internal", redactor=PiiRedactor()),
                              audit=AuditLog(".enclave/audit.jsonl"), costs=CostTable(...))
        for item in guarded.stream(request):   # the answer, citing the original passage numbers
            ...

    ``stream`` raises [EgressRefused][enclave.llms.EgressRefused] (not calling the generator) when
    every passage of a question with context is labelled above the policy's maximum, and otherwise
    passes the generator's stream on, citations renumbered, raising GeneratorUnavailable as it does
    (or for an empty answer). The audit record (``refused``, ``failed`` or ``sent``; ``failed`` also when
    the reader stops before the answer's end, since what was sent has left all the same) names the
    principal, the chunk ids sent and withheld, redactions by type, tokens and the cost (priced by
    ``costs``, in US dollars); it is written and synced to disk before the answer ends.
    """

    def __init__(self, generator: Generator, policy: EgressPolicy, audit: AuditLog | None = None,
                 costs: CostTable | None = None) -> None:
        super().__init__(generator)
        self.policy = policy
        self.audit = audit
        self.costs = costs or CostTable()

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        """What may leave, sent; the answer streamed back with its citations mapped to the original
        numbers, then its Usage. Raises EgressRefused or GeneratorUnavailable."""
        decision = self.policy.inspect(request.question, request.history, request.passages)
        if not decision.allowed:
            self._audit(request, decision, "refused", reason=decision.reason)
            raise EgressRefused(self.name, f"not sent: {decision.reason}")
        outgoing = GenerationRequest(decision.question, decision.passages,
                                     answer_messages(decision.question, decision.passages, decision.history),
                                     decision.history, request.principal)
        renumber = CitationRenumbering(decision.passage_numbers)
        usage, started = Usage(), time.perf_counter()
        try:
            for item in with_text(self.name, self.generator.stream(outgoing)):
                if isinstance(item, Usage):
                    usage = item
                    continue
                text = renumber.feed(item)
                if text:
                    yield text
            tail = renumber.flush()
            if tail:
                yield tail
        except GeneratorUnavailable as exc:
            self._audit(request, decision, "failed", reason=exc.reason)
            raise
        except BaseException:  # the reader stopped early (GeneratorExit: a client went away), or a bug
            self._audit(request, decision, "failed", reason="the answer was not read to its end")
            raise
        cost = self.costs.cost(self.name, self.model, self.locality, usage.tokens_in, usage.tokens_out,
                               time.perf_counter() - started)
        self._audit(request, decision, "sent", usage=usage, cost=cost)
        yield usage

    def _audit(self, request: GenerationRequest, decision: EgressDecision, outcome: str,
               usage: Usage | None = None, cost: float = 0.0, reason: str = "") -> None:
        if self.audit is None:
            return
        usage = usage or Usage()
        refused = outcome == "refused"
        self.audit.append(AuditRecord(
            time=now_iso(), principal=request.principal, generator=self.name, model=self.model, outcome=outcome,
            chunks_sent=[] if refused else list(decision.sent), chunks_withheld=list(decision.withheld),
            redactions={} if refused else dict(decision.redactions),
            tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, cost=cost, reason=reason,
        ))
