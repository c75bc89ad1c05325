"""The usage log: one JSON line per answer (local or external), what ``enclave costs`` adds up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from enclave.contracts import Attempt, Generation, GenerationRequest
from enclave.llms.audit_log import JsonLinesLog, now_iso


@dataclass
class UsageRecord:
    """One answer: ``time`` ISO 8601 UTC; who asked; the generator that answered, its model and
    locality; tokens; ``seconds`` the answering generator took; ``cost`` in US dollars; ``route``
    the generators tried before it, in order."""

    time: str
    principal: str
    generator: str
    model: str
    locality: str
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    cost: float = 0.0
    route: list[str] = field(default_factory=list)


class UsageLog(JsonLinesLog[UsageRecord]):
    """Every answer's usage and cost (see [JsonLinesLog][enclave.llms.audit_log.JsonLinesLog] for the file's guarantees).

    Usage::

        log = UsageLog(".enclave/usage.jsonl")
        sum(r.cost for r in log.records(since=start, generator="openai"))
    """

    record_type = UsageRecord


class UsageObserver:
    """Writes a [UsageRecord][enclave.llms.UsageRecord] for every answer a route finishes (a
    [RouteObserver][enclave.llms.RouteObserver]).

    Usage::

        router = FallbackRouter(generators, observers=[UsageObserver(UsageLog(".enclave/usage.jsonl"))])
    """

    def __init__(self, log: UsageLog) -> None:
        self.log = log

    def answered(self, request: GenerationRequest, generation: Generation) -> None:
        self.log.append(UsageRecord(
            time=now_iso(), principal=request.principal, generator=generation.generator, model=generation.model,
            locality=str(generation.locality), tokens_in=generation.tokens_in, tokens_out=generation.tokens_out,
            seconds=round(generation.seconds, 3), cost=generation.cost, route=[a.generator for a in generation.attempts],
        ))

    def unanswered(self, request: GenerationRequest, attempts: Sequence[Attempt]) -> None:
        """Nothing to record: no answer, no usage (the attempts are in the audit log and the metrics)."""
