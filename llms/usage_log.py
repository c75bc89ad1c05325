"""The usage log: one JSON line per answer (local or external), what ``enclave costs`` adds up."""

from __future__ import annotations

from dataclasses import dataclass, field

from llms.audit_log import JsonLinesLog


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
    """Every answer's usage and cost (see :class:`llms.audit_log.JsonLinesLog` for the file's guarantees).

    Usage::

        log = UsageLog(".enclave/usage.jsonl")
        sum(r.cost for r in log.records(since=start, generator="openai"))
    """

    record_type = UsageRecord
