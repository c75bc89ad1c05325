"""The route: generators tried in order until one answers the whole question.

A route is an ordered list of generators, each usually wrapped: an external one in its
[EgressGuard][enclave.llms.EgressGuard] (policy, redaction, renumbering, audit), every one in its
[BreakerGuard][enclave.llms.BreakerGuard] (circuit breaker). The router itself only keeps the order
and the restarts: a generator that raises GeneratorUnavailable before its answer is whole moves the
route on to the next; if it had already streamed pieces, a [Restart][enclave.llms.Restart] tells the
consumer to discard them, so the answer shown is one generator's, whole. The finished answer is
priced (a [CostTable][enclave.llms.CostTable]) and handed to the observers (the usage log; the
server's metrics read the same answer).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from enclave.contracts import (
    Attempt,
    AttemptOutcome,
    Generation,
    GenerationRequest,
    Generator,
    GeneratorUnavailable,
    Locality,
    Usage,
)
from enclave.llms.abstention import is_abstention
from enclave.llms.cost_table import CostTable
from enclave.llms.egress_guard import EgressGuard
from enclave.llms.egress_policy import EgressPolicy
from enclave.llms.generator import WrappedGenerator, with_text


class AllGeneratorsFailed(RuntimeError):
    """Every generator on the route failed, was skipped or was not sent the request; ``attempts``
    names each reason."""

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


#: What [FallbackRouter.stream][enclave.llms.FallbackRouter.stream] yields.
RouteEvent = Token | Restart | Finished


class RouteObserver(Protocol):
    """Told of each question's end: the finished answer, or the route's failure. Called before the
    answer reaches the caller; must not raise."""

    def answered(self, request: GenerationRequest, generation: Generation) -> None:
        """``generation`` (priced, with its attempts) answered ``request``."""
        ...

    def unanswered(self, request: GenerationRequest, attempts: Sequence[Attempt]) -> None:
        """No generator answered ``request``."""
        ...


class FallbackRouter:
    """Tries each generator in order; the first whole answer wins.

    Usage::

        router = FallbackRouter(
            [BreakerGuard(OllamaGenerator("llama3.1:8b"), CircuitBreaker()),
             BreakerGuard(EgressGuard(OpenAIGenerator("gpt-4o-mini"), EgressPolicy("internal")), CircuitBreaker()),
             ExtractiveGenerator(embed)],
            costs=CostTable(...), observers=[UsageObserver(UsageLog(".enclave/usage.jsonl"))],
        )
        for event in router.stream(request):      # Token..., [Restart, Token...], Finished
            ...
        generation = router.run(request)          # the same, whole
        generation.generator, generation.cost, generation.attempts   # who answered, $, the route

    An external generator that is not behind an [EgressGuard][enclave.llms.EgressGuard] gets one with
    the default ``EgressPolicy()`` (at most ``internal``, no redaction): fail closed. ``only`` names the
    generators to try (in the route's order; an unknown name raises ValueError).
    Raises [AllGeneratorsFailed][enclave.llms.AllGeneratorsFailed] when none answers; any exception
    other than GeneratorUnavailable is a bug and propagates. Nothing waits longer than the generators'
    own time limits.
    """

    def __init__(self, generators: Sequence[Generator], costs: CostTable | None = None,
                 observers: Sequence[RouteObserver] = ()) -> None:
        if not generators:
            raise ValueError("a route needs at least one generator")
        self.generators = [EgressGuard(g, EgressPolicy()) if g.locality == Locality.EXTERNAL and not _egress_guarded(g)
                           else g for g in generators]
        self.costs = costs or CostTable()
        self.observers = list(observers)

    @property
    def names(self) -> list[str]:
        """The generators' names, in route order."""
        return [g.name for g in self.generators]

    def run(self, request: GenerationRequest, only: Sequence[str] | None = None) -> Generation:
        """The answer of the first generator that gives a whole one. Raises AllGeneratorsFailed."""
        for event in self.stream(request, only):
            if isinstance(event, Finished):
                return event.generation
        raise AssertionError("a route's stream ends with Finished or raises")  # pragma: no cover

    def stream(self, request: GenerationRequest, only: Sequence[str] | None = None) -> Iterator[RouteEvent]:
        """Token events as the answering generator streams, a Restart when one fails mid-answer, and a
        last Finished with the whole, priced Generation. Raises AllGeneratorsFailed."""
        unknown = sorted(set(only or ()) - set(self.names))
        if unknown:
            raise ValueError(f"no generator named {', '.join(unknown)} on the route ({', '.join(self.names)})")
        attempts: list[Attempt] = []
        for generator in self.generators:
            if only is not None and generator.name not in only:
                continue
            started = time.perf_counter()
            pieces: list[str] = []
            usage = Usage()
            try:
                for item in with_text(generator.name, generator.stream(request)):
                    if isinstance(item, Usage):
                        usage = item
                    elif item:
                        pieces.append(item)
                        yield Token(item)
            except GeneratorUnavailable as exc:
                attempts.append(Attempt(generator.name, exc.outcome, exc.reason, time.perf_counter() - started))
                if pieces:
                    yield Restart(generator.name, exc.reason)
                continue
            seconds = time.perf_counter() - started
            attempts.append(Attempt(generator.name, AttemptOutcome.ANSWERED, "", seconds))
            text = "".join(pieces).strip()
            generation = Generation(
                text=text, generator=generator.name, model=generator.model,
                locality=generator.locality, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out,
                attempts=attempts, seconds=seconds, abstained=is_abstention(text),
            )
            generation.cost = self.costs.cost(generator.name, generator.model, generator.locality,
                                              usage.tokens_in, usage.tokens_out, seconds)
            for observer in self.observers:
                observer.answered(request, generation)
            yield Finished(generation)
            return
        for observer in self.observers:
            observer.unanswered(request, attempts)
        raise AllGeneratorsFailed(attempts)


def _egress_guarded(generator: Generator) -> bool:
    """Whether ``generator`` is an EgressGuard, or wraps one (a BreakerGuard around it, say)."""
    while not isinstance(generator, EgressGuard) and isinstance(generator, WrappedGenerator):
        generator = generator.generator
    return isinstance(generator, EgressGuard)
