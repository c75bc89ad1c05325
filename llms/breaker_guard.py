"""A generator behind its circuit breaker: skipped while it keeps failing, probed after a cool-down."""

from __future__ import annotations

from collections.abc import Iterator

from enclave.contracts import AttemptOutcome, GenerationRequest, Generator, GeneratorUnavailable, Usage
from enclave.llms.circuit_breaker import CircuitBreaker
from enclave.llms.generator import WrappedGenerator, with_text


class GeneratorSkipped(GeneratorUnavailable):
    """The generator's circuit breaker is open: it was not called (outcome ``skipped``)."""

    outcome = AttemptOutcome.SKIPPED


class BreakerGuard(WrappedGenerator):
    """Wraps a [Generator][enclave.contracts.Generator] in a [CircuitBreaker][enclave.llms.CircuitBreaker].

    Usage::

        guarded = BreakerGuard(OllamaGenerator("llama3.1:8b"), CircuitBreaker(failures=3, cooldown=30))
        for item in guarded.stream(request):   # raises GeneratorSkipped while the circuit is open
            ...

    A failure (GeneratorUnavailable with outcome ``failed``, an empty answer included) counts against
    the breaker; a whole answer closes it. A request the egress policy kept back (``not_sent``) and a
    stream its reader abandons count neither way (a half-open probe is given back). Name, model,
    locality and ``reachable`` are the wrapped generator's: readiness does not depend on the breaker.
    One breaker may guard several wrappers of the same generator (the question condenser's uses the
    route's).
    """

    def __init__(self, generator: Generator, breaker: CircuitBreaker) -> None:
        super().__init__(generator)
        self.breaker = breaker

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        """The wrapped generator's stream. Raises GeneratorSkipped when the circuit is open, and
        GeneratorUnavailable as the generator does (or for an empty answer)."""
        if not self.breaker.allow():
            raise GeneratorSkipped(self.name, f"skipped: failing, next try in {self.breaker.retry_in:.0f} s")
        verdict = False
        try:
            yield from with_text(self.name, self.generator.stream(request))
        except GeneratorUnavailable as exc:
            if exc.outcome is AttemptOutcome.FAILED:
                self.breaker.record_failure()
                verdict = True
            raise
        else:
            self.breaker.record_success()
            verdict = True
        finally:
            if not verdict:
                self.breaker.release()
