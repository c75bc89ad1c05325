"""Follow-up questions made standalone before retrieval, by a local model or, failing that, keywords."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from enclave.contracts import GenerationRequest, Generator, GeneratorUnavailable, Locality
from enclave.prompts.condense_prompt import condense_messages, condensed_line, keyword_question


@dataclass(frozen=True)
class CondensedQuestion:
    """``question``: what retrieval and the generator get; ``by``: the generator that rewrote it,
    ``"keywords"`` (the last question plus history keywords) or ``""`` (no history: unchanged)."""

    question: str
    by: str


class QuestionCondenser:
    """Rewrites a follow-up question with its chat history into a standalone question.

    Usage::

        condenser = QuestionCondenser([BreakerGuard(OllamaGenerator("llama3.1:8b", timeout=20), route_breaker)])
        condenser.run("And for part-time staff?", [{"role": "user", "content": "How many leave days?"},
                                                   {"role": "assistant", "content": "25 days [1]."}])
        # CondensedQuestion(question="How many leave days do part-time staff get?", by="ollama")

    Only local generators may condense (the history can hold anything an earlier answer showed):
    an external one raises ValueError. Each is tried in order; one that fails or is skipped by its
    circuit breaker (GeneratorUnavailable: wrap it in a [BreakerGuard][enclave.llms.BreakerGuard] that
    shares the route's breaker), or replies with no usable line, is passed over, and with none left the
    question gets the history's keywords (``enclave.prompts.keyword_question``). Never raises for a
    generator's failure.
    """

    def __init__(self, generators: Sequence[Generator] = ()) -> None:
        external = [g.name for g in generators if g.locality != Locality.LOCAL]
        if external:
            raise ValueError(f"only local generators may condense chat history; external: {', '.join(external)}")
        self.generators = list(generators)

    def run(self, question: str, history: Sequence[dict[str, str]]) -> CondensedQuestion:
        if not history:
            return CondensedQuestion(question, "")
        messages = condense_messages(question, history)
        for generator in self.generators:
            try:
                reply = generator.run(GenerationRequest(question, (), messages)).text
            except GeneratorUnavailable:
                continue
            standalone = condensed_line(reply)
            if standalone:
                return CondensedQuestion(standalone, generator.name)
        return CondensedQuestion(keyword_question(question, history), "keywords")
