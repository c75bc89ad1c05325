"""Every fault the route must survive, through the real ``ollama`` and ``openai`` clients against
stand-in servers on 127.0.0.1: the route falls back to the next generator with the right reason,
within the time limits, and a stream broken after its first pieces is discarded (Restart), so the
answer is one generator's, whole. ``bench/fallback_faults.py`` prints the same matrix with timings."""

from __future__ import annotations

import time

import pytest
from standins.anthropic_server import AnthropicStandIn
from standins.ollama_server import OllamaStandIn
from standins.openai_server import OpenAIStandIn

from enclave.llms import BreakerGuard, CircuitBreaker, EgressGuard, ExtractiveGenerator
from enclave.llms.anthropic_generator import AnthropicGenerator
from enclave.llms.egress_policy import EgressPolicy
from enclave.llms.fallback_router import (
    AllGeneratorsFailed,
    FallbackRouter,
    Finished,
    Restart,
    Token,
)
from enclave.llms.ollama_generator import OllamaGenerator
from enclave.llms.openai_generator import OpenAIGenerator

FIRST_TOKEN = 0.5  # seconds: the first-token limit the faulty generators get
TOTAL = 5.0

#: fault name -> (knobs set on the stand-in, words of the reason the route records, streams a piece first)
FAULTS = {
    "connection refused": ({"refuse_connections": True}, "cannot connect", False),
    "no first token": ({"stall_before_first_token": 3.0}, "timed out", False),
    "stall mid-stream": ({"stall_after_first_token": 3.0}, "timed out", True),
    "HTTP 500": ({"fail_status": 500}, "HTTP 500", False),
    "HTTP 429": ({"fail_status": 429}, "HTTP 429", False),
    "model not found": ({"models": []}, "not found", False),
    "malformed stream": ({"malformed_stream": True}, "the stream broke", True),
    "stream cut (connection closed)": ({"cut_stream_after": 3}, "the stream broke", True),
    "stream ended without finishing": ({"cut_stream_after": 3, "cut_stream_cleanly": True}, "ended before", True),
}
#: faults only an API with a context limit it enforces (OpenAI-compatible, Anthropic) reports
CONTEXT_FAULTS = {"context overflow": ({"context_overflow": True}, "longer than the model's context", False)}
ANTHROPIC_ONLY = {"HTTP 529 overloaded": ({"fail_status": 529}, "HTTP 529", False)}
KINDS = ("ollama", "openai", "anthropic")


def _stand_in(kind: str):
    if kind == "ollama":
        return OllamaStandIn(models=["llama3.1:8b"])
    return OpenAIStandIn(models=["gpt-4o-mini"]) if kind == "openai" else AnthropicStandIn(models=["claude-sonnet-4-5"])


def _generator(kind: str, server):
    """The generator of ``kind`` on ``server``; local here (this file is about faults, not egress)."""
    limits = {"timeout": TOTAL, "first_token_timeout": FIRST_TOKEN, "connect_timeout": 1.0}
    if kind == "ollama":
        return OllamaGenerator("llama3.1:8b", host=server.url, **limits)
    if kind == "openai":
        return OpenAIGenerator("gpt-4o-mini", base_url=server.url, api_key="test", locality="local", **limits)
    return AnthropicGenerator("claude-sonnet-4-5", base_url=server.url, api_key="test", locality="local", **limits)


def faults_of(kind: str) -> dict:
    """The fault table for one kind of generator."""
    extra = {} if kind == "ollama" else {**CONTEXT_FAULTS, **(ANTHROPIC_ONLY if kind == "anthropic" else {})}
    return {**FAULTS, **extra}


def _cases():
    for kind in KINDS:
        for name, case in faults_of(kind).items():
            yield pytest.param(kind, *case, id=f"{kind}-{name}")


@pytest.mark.parametrize(("kind", "knobs", "reason", "streams_first"), list(_cases()))
def test_each_fault_falls_back_with_its_reason_in_time(kind, knobs, reason, streams_first, request_hx400):
    with _stand_in(kind) as server:
        for knob, value in knobs.items():
            setattr(server, knob, value)
        chain = FallbackRouter([_generator(kind, server), ExtractiveGenerator()])
        started = time.perf_counter()
        events = list(chain.stream(request_hx400))
        took = time.perf_counter() - started

    finished = events[-1]
    assert isinstance(finished, Finished) and finished.generation.generator == "extractive"
    failed = finished.generation.attempts[0]
    assert failed.generator == kind and reason in failed.error, failed
    restarts = [e for e in events if isinstance(e, Restart)]
    assert len(restarts) == (1 if streams_first else 0), events
    if streams_first:  # what came before the Restart is the broken answer; after it, the whole new one
        after = events[events.index(restarts[0]) + 1:]
        assert "".join(e.text for e in after if isinstance(e, Token)) == finished.generation.text
    assert took < FIRST_TOKEN + 2.5, f"{kind} {knobs}: {took:.2f} s"  # a stall costs the first-token limit, no more


@pytest.mark.parametrize("kind", KINDS)
def test_a_healthy_server_streams_the_answer_with_its_token_counts(kind, request_hx400):
    with _stand_in(kind) as server:
        events = list(FallbackRouter([_generator(kind, server), ExtractiveGenerator()]).stream(request_hx400))
        [body] = [r if kind == "ollama" else r["body"] for r in server.chat_requests]
    finished = events[-1].generation
    assert finished.generator == kind and finished.text == "The HX-400 is a centrifugal pump rated for 400 litres per minute. [1]"
    assert len([e for e in events if isinstance(e, Token)]) > 3  # streamed piece by piece
    sent = [{"content": body.get("system", "")}, *body["messages"]]  # Anthropic's system prompt travels apart
    prompt_words = sum(len(m["content"].split()) for m in sent)
    assert (finished.tokens_in, finished.tokens_out) == (prompt_words, len(finished.text.split()))
    assert body["stream"] is True


def test_every_generator_failing_names_each_failure_quickly(request_hx400):
    with OllamaStandIn(models=["llama3.1:8b"], fail_status=503) as ollama, \
            OpenAIStandIn(models=["gpt-4o-mini"], stall_before_first_token=3.0) as openai_server:
        chain = FallbackRouter([_generator("ollama", ollama), _generator("openai", openai_server)])
        started = time.perf_counter()
        with pytest.raises(AllGeneratorsFailed) as failure:
            chain.run(request_hx400)
        took = time.perf_counter() - started
    message = str(failure.value)
    assert "ollama: HTTP 503" in message and "openai: timed out" in message
    assert took < FIRST_TOKEN + 2.5


def test_a_failing_external_generator_is_skipped_by_its_breaker_then_probed(request_hx400):
    with OpenAIStandIn(models=["gpt-4o-mini"], fail_status=500) as server:
        generator = _generator("openai", server)
        chain = FallbackRouter([BreakerGuard(generator, CircuitBreaker(failures=2, cooldown=0.3)), ExtractiveGenerator()])
        for _ in range(3):
            chain.run(request_hx400)
        assert len(server.chat_requests) == 2  # the third question did not wait on a server known to fail
        server.fail_status = None
        time.sleep(0.35)
        assert chain.run(request_hx400).generator == "openai"  # the probe after the cool-down answered


def test_an_external_generator_is_policed_through_the_real_client(request_hx400):
    # request_hx400's passages carry no label: they count as restricted, so nothing may leave
    with OpenAIStandIn(models=["gpt-4o-mini"]) as server:
        external = OpenAIGenerator("gpt-4o-mini", base_url=server.url, api_key="test", first_token_timeout=FIRST_TOKEN)
        chain = FallbackRouter([EgressGuard(external, EgressPolicy("restricted")), ExtractiveGenerator()])
        assert chain.run(request_hx400).generator == "openai"  # allowed up to restricted: it answers
        chain = FallbackRouter([EgressGuard(external, EgressPolicy("confidential")), ExtractiveGenerator()])
        generation = chain.run(request_hx400)
        assert generation.generator == "extractive" and generation.attempts[0].error.startswith("not sent")
        assert len(server.chat_requests) == 1  # the refused call never reached the server


@pytest.fixture
def unanswered_port():
    """A port whose listen queue is full: a connection attempt hangs in SYN-SENT, as with a host that
    drops packets (the connect timeout, not a refusal)."""
    import socket

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the backlog: later SYNs are dropped, never answered
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    yield port
    for sock in [*fillers, listener]:
        sock.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_connect_timeout_falls_back_in_time(kind, unanswered_port, request_hx400):
    class Address:
        url = f"http://127.0.0.1:{unanswered_port}" + ("/v1" if kind == "openai" else "")

    generator = _generator(kind, Address)
    generator.connect_timeout = 0.3
    started = time.perf_counter()
    generation = FallbackRouter([generator, ExtractiveGenerator()]).run(request_hx400)
    took = time.perf_counter() - started
    assert generation.generator == "extractive" and "timed out" in generation.attempts[0].error, generation.attempts
    assert took < 2.0


@pytest.mark.parametrize("kind", KINDS)
def test_an_answer_slower_than_the_total_limit_falls_back(kind, request_hx400):
    with _stand_in(kind) as server:
        server.token_seconds = 0.25  # each piece in time, the whole answer not
        generator = _generator(kind, server)
        generator.timeout = 1.0
        started = time.perf_counter()
        events = list(FallbackRouter([generator, ExtractiveGenerator()]).stream(request_hx400))
        took = time.perf_counter() - started
    generation = events[-1].generation
    assert generation.generator == "extractive" and "no complete answer within 1 s" in generation.attempts[0].error
    assert any(isinstance(e, Restart) for e in events)
    assert took < 1.0 + 1.0
