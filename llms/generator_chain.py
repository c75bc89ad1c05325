"""The route: generators tried in order until one answers."""

from __future__ import annotations

import time
from collections.abc import Sequence

from llms.generator import Attempt, Generation, GenerationRequest, Generator, GeneratorUnavailable


class AllGeneratorsFailed(RuntimeError):
    """Every generator on the route failed; ``attempts`` names each failure."""

    def __init__(self, attempts: list[Attempt]) -> None:
        super().__init__("no generator could answer: " + "; ".join(f"{a.generator}: {a.error}" for a in attempts))
        self.attempts = attempts


class GeneratorChain:
    """Tries each generator in order; the first that answers wins.

    Usage::

        chain = GeneratorChain([OllamaGenerator("llama3.1:8b"), ExtractiveGenerator(embedder.embed)])
        generation = chain.run(request)
        generation.generator      # "extractive" when Ollama was down
        generation.attempts       # [Attempt("ollama", "cannot connect ...", 0.01), Attempt("extractive")]

    A generator that raises GeneratorUnavailable hands over to the next one. Raises AllGeneratorsFailed
    when none answers.
    """

    def __init__(self, generators: Sequence[Generator]) -> None:
        if not generators:
            raise ValueError("a generator chain needs at least one generator")
        self.generators = list(generators)

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.generators]

    def run(self, request: GenerationRequest) -> Generation:
        attempts: list[Attempt] = []
        for generator in self.generators:
            started = time.perf_counter()
            try:
                generation = generator.run(request)
            except GeneratorUnavailable as exc:
                attempts.append(Attempt(generator.name, exc.reason, time.perf_counter() - started))
                continue
            attempts.append(Attempt(generator.name, "", time.perf_counter() - started))
            generation.attempts = attempts
            return generation
        raise AllGeneratorsFailed(attempts)
