"""``reachable(timeout)`` of every generator, through the real clients against the stand-in servers:
None when the server answers its model list, a short reason otherwise, never an exception, never
longer than the timeout."""

from __future__ import annotations

import time

from standins.anthropic_server import AnthropicStandIn
from standins.ollama_server import OllamaStandIn
from standins.openai_server import OpenAIStandIn

from enclave.llms.anthropic_generator import AnthropicGenerator
from enclave.llms.extractive_generator import ExtractiveGenerator
from enclave.llms.ollama_generator import OllamaGenerator
from enclave.llms.openai_generator import OpenAIGenerator

MODEL = "llama3.1:8b"


def timed(check, timeout: float) -> str | None:
    started = time.monotonic()
    reason = check(timeout=timeout)
    assert time.monotonic() - started < timeout + 0.5
    return reason


def test_ollama_reachable_asks_the_model_list_and_finds_the_model(ollama_server, dead_host):
    assert OllamaGenerator(MODEL, host=ollama_server.url).reachable() is None
    assert ollama_server.calls == [("GET", "/api/tags")]  # the model list: no chat, no model loaded
    assert OllamaGenerator("mistral", host=ollama_server.url).reachable() == "model 'mistral' not found on the server"
    with OllamaStandIn(models=["llama3:latest"]) as tagged:
        assert OllamaGenerator("llama3", host=tagged.url).reachable() is None  # Ollama's implied :latest
    assert OllamaGenerator(MODEL, host=dead_host).reachable() == f"cannot connect to Ollama at {dead_host}"
    ollama_server.fail_status = 500
    assert OllamaGenerator(MODEL, host=ollama_server.url).reachable().startswith("HTTP 500")
    ollama_server.fail_status, ollama_server.stall_seconds = 0, 3.0
    assert timed(OllamaGenerator(MODEL, host=ollama_server.url).reachable, 0.3) == "no answer within 0.3 s"


def test_openai_reachable_lists_models_with_its_own_short_timeout(dead_host):
    with OpenAIStandIn() as server:
        generator = OpenAIGenerator("gpt-4o-mini", base_url=server.url, api_key="key", timeout=60)
        assert generator.reachable() is None
        assert server.requests[-1]["path"] == "/v1/models"
        server.fail_status = 401
        assert generator.reachable() == "HTTP 401: stand-in failure (HTTP 401)"
        server.fail_status, server.stall_seconds = 0, 3.0
        assert timed(generator.reachable, 0.3) == "no answer within 0.3 s"
    assert OpenAIGenerator("gpt-4o-mini", base_url=f"{dead_host}/v1").reachable().startswith("cannot connect to")


def test_anthropic_reachable_lists_one_model(dead_host):
    with AnthropicStandIn() as server:
        generator = AnthropicGenerator("claude-sonnet-4-5", base_url=server.url, api_key="key", timeout=60)
        assert generator.reachable() is None
        assert server.requests[-1]["path"] == "/v1/models?limit=1"
        server.fail_status = 529
        assert generator.reachable().startswith("HTTP 529")
        server.fail_status, server.stall_seconds = 0, 3.0
        assert timed(generator.reachable, 0.3) == "no answer within 0.3 s"
    assert AnthropicGenerator("claude-sonnet-4-5", base_url=dead_host).reachable().startswith("cannot connect to")


def test_extractive_is_always_reachable():
    assert ExtractiveGenerator().reachable() is None
