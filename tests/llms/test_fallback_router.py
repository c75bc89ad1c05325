"""FallbackRouter: Ollama (the stand-in) first, the extractive generator when Ollama cannot answer."""

from __future__ import annotations

import pytest

from enclave.contracts import AttemptOutcome, GeneratorUnavailable, Locality
from enclave.llms import AllGeneratorsFailed, ExtractiveGenerator, FallbackRouter, OllamaGenerator
from enclave.llms.extractive_generator import NO_MODEL_NOTICE
from enclave.llms.generator import collect

MODEL = "llama3.1:8b"


def chain_for(host: str, model: str = MODEL, timeout: float = 10) -> FallbackRouter:
    return FallbackRouter([OllamaGenerator(model, host=host, timeout=timeout), ExtractiveGenerator()])


def test_ollama_answers_when_it_is_up(ollama_server, request_hx400):
    generation = chain_for(ollama_server.url).run(request_hx400)

    assert generation.generator == "ollama"
    assert generation.text == "The HX-400 is a centrifugal pump rated for 400 litres per minute. [1]"
    assert [a.generator for a in generation.attempts] == ["ollama"]
    assert generation.attempts[0].error == ""
    assert generation.attempts[0].seconds >= 0
    assert len(ollama_server.requests) == 1


def test_falls_through_to_extractive_when_ollama_is_down(dead_host, request_hx400):
    generation = chain_for(dead_host).run(request_hx400)

    assert generation.generator == "extractive"
    assert generation.text.startswith(NO_MODEL_NOTICE)
    assert "[1]" in generation.text
    assert [a.generator for a in generation.attempts] == ["ollama", "extractive"]
    failed, answered = generation.attempts
    assert "cannot connect" in failed.error
    assert answered.error == ""


def test_falls_through_when_the_model_is_missing(ollama_server, request_hx400):
    generation = chain_for(ollama_server.url, model="mistral:7b").run(request_hx400)

    assert generation.generator == "extractive"
    assert "mistral:7b" in generation.attempts[0].error
    assert "not found" in generation.attempts[0].error
    assert generation.attempts[1].error == ""
    assert ollama_server.requests[-1]["model"] == "mistral:7b"


def test_falls_through_on_a_server_error(ollama_server, request_hx400):
    ollama_server.fail_status = 500

    generation = chain_for(ollama_server.url).run(request_hx400)

    assert generation.generator == "extractive"
    assert generation.attempts[0].error.startswith("HTTP 500")


def test_falls_through_on_a_timeout_and_times_the_attempt(ollama_server, request_hx400):
    ollama_server.stall_seconds = 20

    generation = chain_for(ollama_server.url, timeout=0.5).run(request_hx400)

    assert generation.generator == "extractive"
    assert "timed out" in generation.attempts[0].error
    assert 0.4 <= generation.attempts[0].seconds < 3.5


def test_second_ollama_serves_when_the_first_has_no_such_model(request_hx400):
    from standins.ollama_server import OllamaStandIn

    with OllamaStandIn(models=["qwen2.5:7b"]) as first, OllamaStandIn(models=["llama3.1:8b"]) as second:
        chain = FallbackRouter([
            OllamaGenerator(MODEL, host=first.url, timeout=10, name="ollama-a"),
            OllamaGenerator(MODEL, host=second.url, timeout=10, name="ollama-b"),
            ExtractiveGenerator(),
        ])
        generation = chain.run(request_hx400)

    assert generation.generator == "ollama-b"
    assert [a.generator for a in generation.attempts] == ["ollama-a", "ollama-b"]
    assert len(first.requests) == len(second.requests) == 1


def test_all_failing_raises_and_names_each(dead_host, ollama_server, request_hx400):
    ollama_server.fail_status = 429
    chain = FallbackRouter([
        OllamaGenerator(MODEL, host=dead_host, timeout=10, name="ollama-local"),
        OllamaGenerator(MODEL, host=ollama_server.url, timeout=10, name="ollama-shared"),
    ])

    with pytest.raises(AllGeneratorsFailed) as caught:
        chain.run(request_hx400)

    assert [a.generator for a in caught.value.attempts] == ["ollama-local", "ollama-shared"]
    assert "cannot connect" in caught.value.attempts[0].error
    assert caught.value.attempts[1].error.startswith("HTTP 429")
    message = str(caught.value)
    assert "ollama-local: cannot connect" in message
    assert "ollama-shared: HTTP 429" in message


def test_an_unexpected_error_is_not_swallowed(request_hx400):
    class Broken:
        name, model, locality = "broken", "m", Locality.LOCAL

        def stream(self, request):
            raise ValueError("a bug, not an outage")
            yield  # a generator function

        def run(self, request):
            return collect(self, request)

        def reachable(self, timeout=2.0):
            return None

    with pytest.raises(ValueError, match="a bug"):
        FallbackRouter([Broken(), ExtractiveGenerator()]).run(request_hx400)


def test_generator_unavailable_from_any_generator_moves_on(request_hx400):
    class Refuses:
        name, model = "refuses", "m"
        locality = Locality.LOCAL  # an external one would not even be called: these passages carry no label

        def stream(self, request):
            raise GeneratorUnavailable(self.name, "quota exhausted")
            yield  # a generator function

        def run(self, request):
            return collect(self, request)

        def reachable(self, timeout=2.0):
            return None

    generation = FallbackRouter([Refuses(), ExtractiveGenerator()]).run(request_hx400)

    assert generation.generator == "extractive"
    assert generation.attempts[0].error == "quota exhausted"
    assert generation.attempts[0].outcome is AttemptOutcome.FAILED


def test_an_empty_chain_is_refused():
    with pytest.raises(ValueError):
        FallbackRouter([])


def test_names_lists_the_route(ollama_server):
    assert chain_for(ollama_server.url).names == ["ollama", "extractive"]
