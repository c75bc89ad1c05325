"""The route: generators tried in order until one answers, with a circuit breaker per generator and
the egress policy in front of every external one.

For each generator on the route, in order:

1. its circuit breaker may skip it (it failed repeatedly and its cool-down has not passed);
2. an external generator gets only what its :class:`llms.egress_policy.EgressPolicy` lets out:
   passages above its label are withheld (the rest renumbered from 1, and its citations mapped back),
   PII redacted; if nothing may leave for a question that needs context, it is not called at all;
3. it streams its answer; a failure before the end (refused connection, timeouts, 5xx, 429, unknown
   model, context overflow, a broken stream) moves on to the next generator. If pieces had already
   been streamed, a :class:`Restart` event tells the consumer to discard them, so the answer shown is
   one generator's, whole.

Every external call, made or refused, leaves an :class:`llms.audit_log.AuditRecord`; every answer
carries its tokens, its cost (:class:`llms.cost_table.CostTable`) and the route taken, and leaves a
:class:`llms.usage_log.UsageRecord`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from llms.audit_log import AuditLog, AuditRecord, now_iso
from llms.circuit_breaker import CircuitBreaker
from llms.cost_table import CostTable
from llms.egress_policy import EgressDecision, EgressPolicy
from llms.generator import (
    Attempt,
    Generation,
    GenerationRequest,
    Generator,
    GeneratorUnavailable,
    Usage,
)
from llms.usage_log import UsageLog, UsageRecord
from prompts import answer_messages


class AllGeneratorsFailed(RuntimeError):
    """Every generator on the route failed or was skipped; ``attempts`` names each reason."""

    def __init__(self, attempts: list[Attempt]) -> None:
        super().__init__("no generator could answer: " + "; ".join(f"{a.generator}: {a.error}" for a in attempts))
        self.attempts = attempts


@dataclass(frozen=True)
class Token:
    """A piece of the answer, to append to what was shown."""

    text: str


@dataclass(frozen=True)
class Restart:
    """The generator streaming the answer failed before finishing: discard every Token so far; the
    next generator's answer follows."""

    generator: str
    reason: str


@dataclass(frozen=True)
class Finished:
    """The answer, whole: its text equals the Tokens since the last Restart."""

    generation: Generation


ChainEvent = Token | Restart | Finished
_CITATION = re.compile(r"\[(\d+)\]")


class _Renumber:
    """Maps citations ``[k]`` of an answer written from outgoing passages back to the original passage
    numbers, in a stream: a trailing ``[12`` is held back until its ``]`` arrives."""

    def __init__(self, numbers: Sequence[int]) -> None:
        self.numbers = list(numbers)
        self.pending = ""

    def _map(self, match: re.Match) -> str:
        k = int(match.group(1))
        return f"[{self.numbers[k - 1]}]" if 1 <= k <= len(self.numbers) else match.group(0)

    def feed(self, text: str) -> str:
        text, self.pending = self.pending + text, ""
        cut = text.rfind("[")
        if cut != -1 and (text[cut + 1:] == "" or text[cut + 1:].isdigit()):
            text, self.pending = text[:cut], text[cut:]  # maybe the start of a citation: wait for the rest
        return _CITATION.sub(self._map, text)

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return _CITATION.sub(self._map, text)


class GeneratorChain:
    """Tries each generator in order; the first that answers wins.

    Usage::

        chain = GeneratorChain(
            [OllamaGenerator("llama3.1:8b"), OpenAIGenerator("gpt-4o-mini"), ExtractiveGenerator(embed)],
            policies={"openai": EgressPolicy("internal", redactor=PiiRedactor())},
            audit=AuditLog(".enclave/audit.jsonl"), costs=CostTable(...),
        )
        for event in chain.stream(request, principal="ola"):   # Token..., [Restart, Token...], Finished
            ...
        generation = chain.run(request, principal="ola")      # the same, whole
        generation.generator, generation.cost, generation.attempts   # who answered, $, the route

    An external generator without a policy gets ``EgressPolicy("internal")`` (no redaction): fail
    closed. ``breaker_failures`` consecutive failures skip a generator for ``breaker_cooldown``
    seconds. Raises AllGeneratorsFailed when none answers; nothing waits longer than the generators'
    own time limits.
    """

    def __init__(
        self,
        generators: Sequence[Generator],
        policies: Mapping[str, EgressPolicy] | None = None,
        audit: AuditLog | None = None,
        costs: CostTable | None = None,
        usage: UsageLog | None = None,
        breaker_failures: int = 3,
        breaker_cooldown: float = 30.0,
    ) -> None:
        if not generators:
            raise ValueError("a generator chain needs at least one generator")
        self.generators = list(generators)
        self.policies = dict(policies or {})
        self.audit = audit
        self.usage = usage
        self.costs = costs or CostTable()
        self.breakers = {g.name: CircuitBreaker(breaker_failures, breaker_cooldown) for g in self.generators}

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.generators]

    def run(self, request: GenerationRequest, principal: str = "anonymous",
            history: Sequence[dict[str, str]] = (), only: Sequence[str] | None = None) -> Generation:
        """The answer of the first generator that gives one. Raises AllGeneratorsFailed."""
        for event in self.stream(request, principal, history, only):
            if isinstance(event, Finished):
                return event.generation
        raise AssertionError("a chain stream ends with Finished or raises")  # pragma: no cover

    def stream(self, request: GenerationRequest, principal: str = "anonymous",
               history: Sequence[dict[str, str]] = (), only: Sequence[str] | None = None) -> Iterator[ChainEvent]:
        """Token events as the answering generator streams, a Restart when one fails mid-answer, and a
        last Finished with the whole Generation. ``only``: the names of the generators to try (in the
        chain's order; the rest are passed over); an unknown name raises ValueError. Raises
        AllGeneratorsFailed."""
        unknown = sorted(set(only or ()) - set(self.names))
        if unknown:
            raise ValueError(f"no generator named {', '.join(unknown)} on the route ({', '.join(self.names)})")
        attempts: list[Attempt] = []
        for generator in self.generators:
            if only is not None and generator.name not in only:
                continue
            breaker = self.breakers[generator.name]
            if not breaker.allow():
                attempts.append(Attempt(generator.name, f"skipped: failing, next try in {breaker.retry_in:.0f} s"))
                continue
            outgoing, decision = request, None
            if generator.locality == "external":
                decision = self._policy(generator).inspect(request.question, history, request.passages)
                if not decision.allowed:
                    attempts.append(Attempt(generator.name, f"not sent: {decision.reason}"))
                    self._audit(principal, generator, decision, "refused", reason=decision.reason)
                    continue
                outgoing = GenerationRequest(decision.question, decision.passages,
                                             answer_messages(decision.question, decision.passages, decision.history))
            started = time.perf_counter()
            renumber = _Renumber(decision.passage_numbers) if decision else None
            pieces: list[str] = []
            try:
                usage = Usage()
                for item in self._items(generator, outgoing):
                    if isinstance(item, Usage):
                        usage = item
                        continue
                    text = renumber.feed(item) if renumber else item
                    if text:
                        pieces.append(text)
                        yield Token(text)
                tail = renumber.flush() if renumber else ""
                if tail:
                    pieces.append(tail)
                    yield Token(tail)
                if not "".join(pieces).strip():
                    raise GeneratorUnavailable(generator.name, "the model returned an empty answer")
            except GeneratorUnavailable as exc:
                seconds = time.perf_counter() - started
                breaker.record_failure()
                attempts.append(Attempt(generator.name, exc.reason, seconds))
                if decision:
                    self._audit(principal, generator, decision, "failed", reason=exc.reason)
                if pieces:
                    yield Restart(generator.name, exc.reason)
                continue
            seconds = time.perf_counter() - started
            breaker.record_success()
            attempts.append(Attempt(generator.name, "", seconds))
            model = getattr(generator, "model", generator.name)
            cost = self.costs.cost(generator.name, model, generator.locality, usage.tokens_in, usage.tokens_out, seconds)
            if decision:
                self._audit(principal, generator, decision, "sent", usage=usage, cost=cost)
            if self.usage is not None:
                self.usage.append(UsageRecord(
                    time=now_iso(), principal=principal, generator=generator.name, model=model,
                    locality=generator.locality, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out,
                    seconds=round(seconds, 3), cost=cost, route=[a.generator for a in attempts],
                ))
            yield Finished(Generation(
                text="".join(pieces).strip(), generator=generator.name, model=model, locality=generator.locality,
                tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, attempts=attempts, cost=cost,
                seconds=seconds,
            ))
            return
        raise AllGeneratorsFailed(attempts)

    def _policy(self, generator: Generator) -> EgressPolicy:
        return self.policies.get(generator.name) or EgressPolicy("internal")

    @staticmethod
    def _items(generator: Generator, request: GenerationRequest) -> Iterator[str | Usage]:
        """The generator's stream, or its whole answer as one piece for one that does not stream."""
        stream = getattr(generator, "stream", None)
        if stream is not None:
            yield from stream(request)
            return
        generation = generator.run(request)
        yield generation.text
        yield Usage(generation.tokens_in, generation.tokens_out)

    def _audit(self, principal: str, generator: Generator, decision: EgressDecision, outcome: str,
               usage: Usage | None = None, cost: float = 0.0, reason: str = "") -> None:
        if self.audit is None:
            return
        usage = usage or Usage()
        self.audit.append(AuditRecord(
            time=now_iso(), principal=principal, generator=generator.name,
            model=getattr(generator, "model", generator.name), outcome=outcome,
            chunks_sent=list(decision.sent) if outcome != "refused" else [],
            chunks_withheld=list(decision.withheld), redactions=dict(decision.redactions) if outcome != "refused" else {},
            tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, cost=cost, reason=reason,
        ))
