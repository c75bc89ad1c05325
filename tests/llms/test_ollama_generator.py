"""OllamaGenerator against the stand-in Ollama server: answers, and every way it becomes unavailable."""

from __future__ import annotations

import time

import pytest

from enclave.contracts import Generation, GeneratorUnavailable
from enclave.llms import OllamaGenerator

MODEL = "llama3.1:8b"
EXPECTED = "The HX-400 is a centrifugal pump rated for 400 litres per minute. [1]"


def test_answers_with_text_and_token_counts(ollama_server, request_hx400):
    generator = OllamaGenerator(MODEL, host=ollama_server.url, timeout=10)

    generation = generator.run(request_hx400)

    assert isinstance(generation, Generation)
    assert generation.text == EXPECTED
    assert generation.generator == "ollama"
    assert generation.model == MODEL
    assert generation.locality == "local"
    prompt_words = sum(len(m["content"].split()) for m in request_hx400.messages)
    assert generation.tokens_in == prompt_words > 0
    assert generation.tokens_out == len(EXPECTED.split())


def test_sends_one_streaming_chat_request(ollama_server, request_hx400):
    generator = OllamaGenerator(MODEL, host=ollama_server.url, timeout=10, options={"num_ctx": 4096})

    generator.run(request_hx400)

    assert ollama_server.calls == [("POST", "/api/chat")]
    (body,) = ollama_server.requests
    assert body["stream"] is True  # streamed: pieces reach the caller as Ollama makes them
    assert body["model"] == MODEL
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"] == request_hx400.messages[1]["content"]
    assert body["options"] == {"temperature": 0.0, "num_ctx": 4096}


def test_no_passages_gets_the_no_answer_reply(ollama_server, make_request):
    generation = OllamaGenerator(MODEL, host=ollama_server.url, timeout=10).run(make_request("Who won?", []))

    assert generation.text == "The provided documents do not contain the answer."
    assert "[1]" not in generation.text


def test_reuses_its_client_across_requests(ollama_server, request_hx400):
    generator = OllamaGenerator(MODEL, host=ollama_server.url, timeout=10)

    first = generator.run(request_hx400)
    client = generator.client
    second = generator.run(request_hx400)

    assert first.text == second.text == EXPECTED
    assert generator.client is client
    assert len(ollama_server.requests) == 2


def test_model_not_found_is_unavailable_and_names_the_model(ollama_server, request_hx400):
    generator = OllamaGenerator("llama3.1:70b", host=ollama_server.url, timeout=10)

    with pytest.raises(GeneratorUnavailable) as caught:
        generator.run(request_hx400)

    assert caught.value.generator == "ollama"
    assert "llama3.1:70b" in caught.value.reason
    assert "not found" in caught.value.reason
    assert ollama_server.requests[-1]["model"] == "llama3.1:70b"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_rate_limits_are_unavailable(ollama_server, request_hx400, status):
    ollama_server.fail_status = status
    ollama_server.fail_message = "the model runner has crashed"
    generator = OllamaGenerator(MODEL, host=ollama_server.url, timeout=10)

    with pytest.raises(GeneratorUnavailable) as caught:
        generator.run(request_hx400)

    assert caught.value.reason == f"HTTP {status}: the model runner has crashed"
    assert len(ollama_server.requests) == 1


def test_recovers_once_the_server_does(ollama_server, request_hx400):
    generator = OllamaGenerator(MODEL, host=ollama_server.url, timeout=10)
    ollama_server.fail_status = 500
    with pytest.raises(GeneratorUnavailable):
        generator.run(request_hx400)

    ollama_server.fail_status = 0

    assert generator.run(request_hx400).text == EXPECTED


def test_server_down_is_unavailable_quickly(dead_host, request_hx400):
    generator = OllamaGenerator(MODEL, host=dead_host, timeout=30)

    started = time.perf_counter()
    with pytest.raises(GeneratorUnavailable) as caught:
        generator.run(request_hx400)
    elapsed = time.perf_counter() - started

    assert elapsed < 5, f"a refused connection took {elapsed:.1f} s (the timeout is 30 s)"
    assert "cannot connect" in caught.value.reason
    assert dead_host in caught.value.reason


def test_server_stopped_mid_session_is_unavailable(ollama_server, request_hx400):
    generator = OllamaGenerator(MODEL, host=ollama_server.url, timeout=10)
    assert generator.run(request_hx400).text == EXPECTED

    ollama_server.stop()

    with pytest.raises(GeneratorUnavailable):
        generator.run(request_hx400)


def test_stall_longer_than_the_timeout_is_unavailable_in_time(ollama_server, request_hx400):
    ollama_server.stall_seconds = 20
    generator = OllamaGenerator(MODEL, host=ollama_server.url, timeout=1.0)

    started = time.perf_counter()
    with pytest.raises(GeneratorUnavailable) as caught:
        generator.run(request_hx400)
    elapsed = time.perf_counter() - started

    assert 0.9 <= elapsed < 1.0 + 3, f"gave up after {elapsed:.1f} s with a 1 s timeout"
    assert "timed out" in caught.value.reason
    assert len(ollama_server.requests) == 1  # the request did reach the server


def test_stall_shorter_than_the_timeout_still_answers(ollama_server, request_hx400):
    ollama_server.stall_seconds = 0.3
    generator = OllamaGenerator(MODEL, host=ollama_server.url, timeout=5)

    assert generator.run(request_hx400).text == EXPECTED


def test_honours_ollama_host(ollama_server, request_hx400, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", ollama_server.host)  # "127.0.0.1:PORT", no scheme, as users set it
    generator = OllamaGenerator(MODEL, timeout=10)

    generation = generator.run(request_hx400)

    assert generation.text == EXPECTED
    assert ollama_server.requests[-1]["model"] == MODEL


def test_explicit_host_wins_over_ollama_host(ollama_server, request_hx400, monkeypatch, dead_host):
    monkeypatch.setenv("OLLAMA_HOST", dead_host)

    generation = OllamaGenerator(MODEL, host=ollama_server.url, timeout=10).run(request_hx400)

    assert generation.text == EXPECTED


def test_ollama_host_pointing_nowhere_is_unavailable(request_hx400, monkeypatch, dead_host):
    monkeypatch.setenv("OLLAMA_HOST", dead_host)

    with pytest.raises(GeneratorUnavailable) as caught:
        OllamaGenerator(MODEL, timeout=10).run(request_hx400)

    assert dead_host in caught.value.reason


def test_empty_answer_is_unavailable(ollama_server, request_hx400):
    ollama_server.reply = "   \n"

    with pytest.raises(GeneratorUnavailable) as caught:
        OllamaGenerator(MODEL, host=ollama_server.url, timeout=10).run(request_hx400)

    assert "empty" in caught.value.reason
