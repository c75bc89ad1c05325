"""The route with scripted generators: the egress guard in front of external ones (citations mapped back,
audit), Restart on a broken stream, the breaker guard, costs and the usage observer.
(The same faults through real clients and stand-in servers: tests/llms/test_fallback_faults.py.)"""

from __future__ import annotations

import pytest

from enclave.contracts import (
    AttemptOutcome,
    GenerationRequest,
    Generator,
    GeneratorUnavailable,
    Locality,
    Usage,
)
from enclave.llms import (
    AllGeneratorsFailed,
    AuditLog,
    BreakerGuard,
    CircuitBreaker,
    CostTable,
    EgressGuard,
    EgressPolicy,
    EgressRefused,
    FallbackRouter,
    Finished,
    GeneratorSkipped,
    Restart,
    Token,
    UsageLog,
    UsageObserver,
)
from enclave.llms.cost_table import TokenPrice
from enclave.llms.egress_policy import (
    OutgoingPassage as Chunk,  # a labelled passage, as a test builds one
)
from enclave.llms.generator import collect
from enclave.prompts import answer_messages

CHUNKS = [
    Chunk("c-public", "Price list", "", "CANARY-PUBLIC the HX-400 costs NOK 12,000.", "public"),
    Chunk("c-board", "Board minutes", "", "CANARY-RESTRICTED the merger closes in March.", "restricted"),
    Chunk("c-internal", "Support notes", "", "CANARY-INTERNAL call ola@halvard.no for repairs.", "internal"),
]


def _request(question="What does the HX-400 cost?", chunks=CHUNKS, principal="anonymous") -> GenerationRequest:
    return GenerationRequest(question, chunks, answer_messages(question, chunks), principal=principal)


class Scripted:
    """A generator that streams ``pieces``; an exception among them is raised there."""

    def __init__(self, name, pieces, locality=Locality.LOCAL, model="m", usage=None):
        self.name, self.pieces, self.locality, self.model = name, pieces, Locality(locality), model
        self.usage = usage or Usage(100, 20)
        self.received: list[GenerationRequest] = []

    def stream(self, request):
        self.received.append(request)
        for piece in self.pieces:
            if isinstance(piece, Exception):
                raise piece
            yield piece
        yield self.usage

    def run(self, request):
        return collect(self, request)

    def reachable(self, timeout=2.0):
        return None


def test_a_scripted_generator_meets_the_generator_protocol():
    assert isinstance(Scripted("s", ["x"]), Generator)
    assert isinstance(EgressGuard(Scripted("s", ["x"]), EgressPolicy()), Generator)
    assert isinstance(BreakerGuard(Scripted("s", ["x"]), CircuitBreaker()), Generator)


def test_an_external_generator_gets_only_allowed_chunks_and_its_citations_are_mapped_back(tmp_path):
    external = Scripted("openai", ["The HX-400 costs NOK 12,000 [", "1]. Ask support [2", "]."], locality="external",
                        model="gpt-4o-mini")
    audit = AuditLog(tmp_path / "audit.jsonl")
    costs = CostTable({"gpt-4o-mini": TokenPrice(0.15, 0.60)})
    router = FallbackRouter([EgressGuard(external, EgressPolicy("internal"), audit=audit, costs=costs)], costs=costs)
    generation = router.run(_request(principal="ola"))

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
    router = FallbackRouter([EgressGuard(external, EgressPolicy("confidential"), audit=audit), local])
    generation = router.run(_request("When does the merger close?", [CHUNKS[1]], principal="kari"))

    assert external.received == [] and generation.generator == "extractive"
    assert generation.attempts[0].error.startswith("not sent: all 1 passages are labelled above 'confidential'")
    assert generation.attempts[0].outcome is AttemptOutcome.NOT_SENT
    [record] = audit.records()
    assert record.outcome == "refused" and record.chunks_sent == [] and record.chunks_withheld == ["c-board"]


def test_an_external_generator_without_a_policy_gets_the_fail_closed_default():
    external = Scripted("anthropic", ["ok [1]."], locality="external")
    FallbackRouter([external]).run(_request())
    assert "CANARY-RESTRICTED" not in repr(external.received[0])
    assert "CANARY-INTERNAL" in repr(external.received[0])  # default maximum: internal


def test_a_stream_broken_midway_restarts_with_the_next_generator():
    broken = Scripted("ollama", ["The HX-400 ", "costs", GeneratorUnavailable("ollama", "the stream broke")])
    backup = Scripted("extractive", ["NOK 12,000 [1]."])
    events = list(FallbackRouter([broken, backup]).stream(_request()))

    assert events[:2] == [Token("The HX-400 "), Token("costs")]
    assert events[2] == Restart("ollama", "the stream broke")
    assert isinstance(events[-1], Finished)
    shown = ""
    for event in events:  # what a consumer that honours Restart shows: one answer, whole
        shown = "" if isinstance(event, Restart) else shown + event.text if isinstance(event, Token) else shown
    assert shown == events[-1].generation.text == "NOK 12,000 [1]."
    assert [a.generator for a in events[-1].generation.attempts] == ["ollama", "extractive"]
    assert [a.outcome for a in events[-1].generation.attempts] == [AttemptOutcome.FAILED, AttemptOutcome.ANSWERED]


def test_the_circuit_breaker_skips_a_failing_generator_then_probes_it(monkeypatch):
    flaky = Scripted("ollama", [GeneratorUnavailable("ollama", "HTTP 500")])
    backup = Scripted("extractive", ["answer [1]."])
    breaker = CircuitBreaker(failures=2, cooldown=60)
    router = FallbackRouter([BreakerGuard(flaky, breaker), backup])
    for _ in range(2):
        assert router.run(_request()).generator == "extractive"
    assert len(flaky.received) == 2
    third = router.run(_request())
    assert len(flaky.received) == 2 and third.attempts[0].error.startswith("skipped: failing, next try in")
    assert third.attempts[0].outcome is AttemptOutcome.SKIPPED
    now = breaker._clock() + 61
    monkeypatch.setattr(breaker, "_clock", lambda: now)
    flaky.pieces = ["back [1]."]
    assert router.run(_request()).generator == "ollama"  # the probe answered: closed again


def test_every_answer_is_logged_with_its_route_and_cost(tmp_path):
    usage = UsageLog(tmp_path / "usage.jsonl")
    router = FallbackRouter([Scripted("ollama", [GeneratorUnavailable("ollama", "down")]),
                             Scripted("local-llm", ["answer [1]."], usage=Usage(50, 5))],
                            costs=CostTable(local_hourly={"local-llm": 3600.0}), observers=[UsageObserver(usage)])
    generation = router.run(_request(principal="ola"))
    [record] = usage.records()
    assert (record.principal, record.generator, record.tokens_in, record.tokens_out) == ("ola", "local-llm", 50, 5)
    assert record.route == ["ollama", "local-llm"]
    assert record.cost == pytest.approx(generation.cost) and generation.cost == pytest.approx(generation.seconds, rel=0.05)


def test_all_failing_names_every_failure():
    router = FallbackRouter([Scripted("a", [GeneratorUnavailable("a", "HTTP 429")]),
                             Scripted("b", [GeneratorUnavailable("b", "timed out")])])
    with pytest.raises(AllGeneratorsFailed, match="a: HTTP 429; b: timed out") as failure:
        router.run(_request())
    assert [a.generator for a in failure.value.attempts] == ["a", "b"]


def test_a_refusal_does_not_count_against_the_breaker():
    # the egress policy keeping a request back is not an outage: the breaker stays closed
    external = Scripted("openai", ["never"], locality="external")
    breaker = CircuitBreaker(failures=1, cooldown=60)
    guarded = BreakerGuard(EgressGuard(external, EgressPolicy("public")), breaker)
    router = FallbackRouter([guarded, Scripted("extractive", ["local [1]."])])
    for _ in range(3):
        generation = router.run(_request(chunks=[CHUNKS[1]]))
        assert generation.attempts[0].outcome is AttemptOutcome.NOT_SENT
    assert breaker.state == "closed" and external.received == []
    with pytest.raises(EgressRefused):
        list(guarded.stream(_request(chunks=[CHUNKS[1]])))


def test_an_empty_answer_is_a_failure_that_counts_against_the_breaker():
    breaker = CircuitBreaker(failures=1, cooldown=60)
    silent = Scripted("ollama", ["  ", "\n"])
    router = FallbackRouter([BreakerGuard(silent, breaker), Scripted("extractive", ["quoted [1]."])])
    generation = router.run(_request())
    assert generation.generator == "extractive" and generation.attempts[0].error == "the model returned an empty answer"
    assert breaker.state == "open"
    with pytest.raises(GeneratorSkipped):
        list(BreakerGuard(silent, breaker).stream(_request()))


def test_a_stream_its_reader_abandons_gives_the_probe_back():
    breaker = CircuitBreaker(failures=1, cooldown=0)
    breaker.record_failure()  # open, and with no cool-down: the next call is a half-open probe
    guarded = BreakerGuard(Scripted("ollama", ["first ", "second [1]."]), breaker)
    stream = guarded.stream(_request())
    assert next(stream) == "first "
    stream.close()  # the client went away mid-answer: no verdict
    assert breaker.allow(), "the abandoned probe must not keep the circuit from probing again"


def test_guards_report_the_wrapped_generators_name_model_locality_and_reachability():
    class Down(Scripted):
        def reachable(self, timeout=2.0):
            return "cannot connect"

    inner = Down("gpt", ["x"], locality="external", model="gpt-4o-mini")
    guarded = BreakerGuard(EgressGuard(inner, EgressPolicy()), CircuitBreaker())
    assert (guarded.name, guarded.model, guarded.locality, guarded.reachable(1.0)) == (
        "gpt", "gpt-4o-mini", Locality.EXTERNAL, "cannot connect")


def test_an_external_answer_abandoned_midway_is_still_audited(tmp_path):
    # the client went away after the first words: the passages had left, so the call is on record
    external = Scripted("openai", ["The HX-400 costs ", "NOK 12,000 [1]."], locality="external")
    audit = AuditLog(tmp_path / "audit.jsonl")
    stream = EgressGuard(external, EgressPolicy("internal"), audit=audit).stream(_request(principal="ola"))
    assert next(stream) == "The HX-400 costs "
    stream.close()
    [record] = audit.records()
    assert (record.principal, record.outcome, record.reason) == ("ola", "failed", "the answer was not read to its end")
    assert record.chunks_sent == ["c-public", "c-internal"]


def test_a_local_openai_compatible_server_gets_no_egress_guard_and_is_priced_by_the_hour(tmp_path):
    from types import SimpleNamespace

    from enclave.flows.components import build_breakers, build_route
    from enclave.llms.egress_guard import EgressGuard
    from enclave.llms.generator import WrappedGenerator
    from enclave.settings import Settings

    settings = Settings(data_dir=tmp_path, costs={"local_hourly": {"llamacpp": 3.6}}, generators=[
        {"name": "llamacpp", "kind": "openai", "model": "qwen", "host": "http://127.0.0.1:9/v1", "locality": "local"},
        {"name": "gpt", "kind": "openai", "model": "gpt-4o-mini", "host": "http://127.0.0.1:9/v1"},
    ])
    route = build_route(settings, SimpleNamespace(embed=None, embed_query=None), build_breakers(settings))

    def egress_guarded(generator) -> bool:
        while isinstance(generator, WrappedGenerator) and not isinstance(generator, EgressGuard):
            generator = generator.generator
        return isinstance(generator, EgressGuard)

    local, external = route.generators
    assert (local.name, local.locality, egress_guarded(local)) == ("llamacpp", "local", False)
    assert (external.name, external.locality, egress_guarded(external)) == ("gpt", "external", True)
    # 10 s of hardware at $3.60 an hour, whatever the tokens
    assert route.costs.cost("llamacpp", "qwen", "local", 1000, 100, 10.0) == pytest.approx(0.01)
