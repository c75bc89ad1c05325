"""GeneratorChain's routing logic with scripted generators: egress policy in front of external ones,
citations mapped back, Restart on a broken stream, the circuit breaker, audit and usage records.
(The same faults through real clients and stand-in servers: tests/llms/test_fallback_faults.py.)"""

from __future__ import annotations

import pytest

from llms.audit_log import AuditLog
from llms.cost_table import CostTable, TokenPrice
from llms.egress_policy import EgressPolicy
from llms.egress_policy import (
    OutgoingPassage as Chunk,  # a labelled passage, as a test builds one
)
from llms.generator import GenerationRequest, GeneratorUnavailable, Usage
from llms.generator_chain import (
    AllGeneratorsFailed,
    Finished,
    GeneratorChain,
    Restart,
    Token,
)
from llms.usage_log import UsageLog
from prompts import answer_messages

CHUNKS = [
    Chunk("c-public", "Price list", "", "CANARY-PUBLIC the HX-400 costs NOK 12,000.", "public"),
    Chunk("c-board", "Board minutes", "", "CANARY-RESTRICTED the merger closes in March.", "restricted"),
    Chunk("c-internal", "Support notes", "", "CANARY-INTERNAL call ola@halvard.no for repairs.", "internal"),
]


def _request(question="What does the HX-400 cost?", chunks=CHUNKS) -> GenerationRequest:
    return GenerationRequest(question, chunks, answer_messages(question, chunks))


class Scripted:
    """A streaming generator that plays back ``pieces``; an exception among them is raised there."""

    def __init__(self, name, pieces, locality="local", model="m", usage=None):
        self.name, self.pieces, self.locality, self.model = name, pieces, locality, model
        self.usage = usage or Usage(100, 20)
        self.received: list[GenerationRequest] = []

    def stream(self, request):
        self.received.append(request)
        for piece in self.pieces:
            if isinstance(piece, Exception):
                raise piece
            yield piece
        yield self.usage


def test_an_external_generator_gets_only_allowed_chunks_and_its_citations_are_mapped_back(tmp_path):
    external = Scripted("openai", ["The HX-400 costs NOK 12,000 [", "1]. Ask support [2", "]."], locality="external",
                        model="gpt-4o-mini")
    audit = AuditLog(tmp_path / "audit.jsonl")
    chain = GeneratorChain([external], policies={"openai": EgressPolicy("internal")}, audit=audit,
                           costs=CostTable({"gpt-4o-mini": TokenPrice(0.15, 0.60)}))
    generation = chain.run(_request(), principal="ola")

    sent = repr(external.received[0])
    assert "CANARY-RESTRICTED" not in sent and "Board minutes" not in sent
    assert "CANARY-PUBLIC" in sent and "CANARY-INTERNAL" in sent
    # outgoing passages are renumbered 1, 2; the answer cites the original numbers 1 and 3
    assert generation.text == "The HX-400 costs NOK 12,000 [1]. Ask support [3]."
    assert generation.cost == pytest.approx((100 * 0.15 + 20 * 0.60) / 1e6)
    [record] = audit.records()
    assert (record.principal, record.generator, record.model, record.outcome) == ("ola", "openai", "gpt-4o-mini", "sent")
    assert record.chunks_sent == ["c-public", "c-internal"] and record.chunks_withheld == ["c-board"]
    assert (record.tokens_in, record.tokens_out, record.cost) == (100, 20, generation.cost)


def test_no_allowed_context_means_no_external_call_and_a_local_answer_saying_why(tmp_path):
    external = Scripted("openai", ["never"], locality="external")
    local = Scripted("extractive", ["From the documents: the merger closes in March [1]."])
    audit = AuditLog(tmp_path / "audit.jsonl")
    chain = GeneratorChain([external, local], policies={"openai": EgressPolicy("confidential")}, audit=audit)
    generation = chain.run(_request("When does the merger close?", [CHUNKS[1]]), principal="kari")

    assert external.received == [] and generation.generator == "extractive"
    assert generation.attempts[0].error.startswith("not sent: all 1 passages are labelled above 'confidential'")
    [record] = audit.records()
    assert record.outcome == "refused" and record.chunks_sent == [] and record.chunks_withheld == ["c-board"]


def test_an_external_generator_without_a_policy_gets_the_fail_closed_default():
    external = Scripted("anthropic", ["ok [1]."], locality="external")
    GeneratorChain([external]).run(_request())
    assert "CANARY-RESTRICTED" not in repr(external.received[0])
    assert "CANARY-INTERNAL" in repr(external.received[0])  # default maximum: internal


def test_a_stream_broken_midway_restarts_with_the_next_generator():
    broken = Scripted("ollama", ["The HX-400 ", "costs", GeneratorUnavailable("ollama", "the stream broke")])
    backup = Scripted("extractive", ["NOK 12,000 [1]."])
    events = list(GeneratorChain([broken, backup]).stream(_request()))

    assert events[:2] == [Token("The HX-400 "), Token("costs")]
    assert events[2] == Restart("ollama", "the stream broke")
    assert isinstance(events[-1], Finished)
    shown = ""
    for event in events:  # what a consumer that honours Restart shows: one answer, whole
        shown = "" if isinstance(event, Restart) else shown + event.text if isinstance(event, Token) else shown
    assert shown == events[-1].generation.text == "NOK 12,000 [1]."
    assert [a.generator for a in events[-1].generation.attempts] == ["ollama", "extractive"]


def test_the_circuit_breaker_skips_a_failing_generator_then_probes_it(monkeypatch):
    flaky = Scripted("ollama", [GeneratorUnavailable("ollama", "HTTP 500")])
    backup = Scripted("extractive", ["answer [1]."])
    chain = GeneratorChain([flaky, backup], breaker_failures=2, breaker_cooldown=60)
    for _ in range(2):
        assert chain.run(_request()).generator == "extractive"
    assert len(flaky.received) == 2
    third = chain.run(_request())
    assert len(flaky.received) == 2 and third.attempts[0].error.startswith("skipped: failing, next try in")
    now = chain.breakers["ollama"]._clock() + 61
    monkeypatch.setattr(chain.breakers["ollama"], "_clock", lambda: now)
    flaky.pieces = ["back [1]."]
    assert chain.run(_request()).generator == "ollama"  # the probe answered: closed again


def test_every_answer_is_logged_with_its_route_and_cost(tmp_path):
    usage = UsageLog(tmp_path / "usage.jsonl")
    chain = GeneratorChain([Scripted("ollama", [GeneratorUnavailable("ollama", "down")]),
                            Scripted("local-llm", ["answer [1]."], usage=Usage(50, 5))],
                           costs=CostTable(local_hourly={"local-llm": 3600.0}), usage=usage)
    generation = chain.run(_request(), principal="ola")
    [record] = usage.records()
    assert (record.principal, record.generator, record.tokens_in, record.tokens_out) == ("ola", "local-llm", 50, 5)
    assert record.route == ["ollama", "local-llm"]
    assert record.cost == pytest.approx(generation.cost) and generation.cost == pytest.approx(generation.seconds, rel=0.05)


def test_all_failing_names_every_failure():
    chain = GeneratorChain([Scripted("a", [GeneratorUnavailable("a", "HTTP 429")]),
                            Scripted("b", [GeneratorUnavailable("b", "timed out")])])
    with pytest.raises(AllGeneratorsFailed, match="a: HTTP 429; b: timed out") as failure:
        chain.run(_request())
    assert [a.generator for a in failure.value.attempts] == ["a", "b"]
