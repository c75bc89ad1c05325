"""The question condenser: a local model rewrites a follow-up; failing that, the history's keywords."""

from __future__ import annotations

import pytest
from standins.ollama_server import OllamaStandIn

from enclave.llms import BreakerGuard, OllamaGenerator, OpenAIGenerator
from enclave.llms.circuit_breaker import CircuitBreaker
from enclave.llms.question_condenser import QuestionCondenser

HISTORY = [{"role": "user", "content": "What is the minimum length for a password?"},
           {"role": "assistant", "content": "14 characters [1]."}]


def test_the_local_model_condenses_and_without_history_nothing_is_asked():
    with OllamaStandIn(models=["llama3.1:8b"]) as server:
        condenser = QuestionCondenser([OllamaGenerator("llama3.1:8b", host=server.url, timeout=5)])
        assert condenser.run("Is that new?", []).by == ""
        assert server.chat_requests == []
        condensed = condenser.run("Where must it be stored?", HISTORY)
        [request] = server.chat_requests
    assert condensed.by == "ollama"
    assert condensed.question == "Where must it be stored? (about: What is the minimum length for a password?)"
    assert "Follow-up question: Where must it be stored?" in request["messages"][-1]["content"]


def test_a_model_that_fails_or_is_skipped_leaves_the_keywords():
    with OllamaStandIn(models=["llama3.1:8b"]) as server:
        server.fail_status = 500
        breaker = CircuitBreaker(failures=1, cooldown=60)
        condenser = QuestionCondenser([BreakerGuard(OllamaGenerator("llama3.1:8b", host=server.url, timeout=5), breaker)])
        first = condenser.run("Where must it be stored?", HISTORY)
        calls = len(server.chat_requests)
        second = condenser.run("Where must it be stored?", HISTORY)  # the breaker is open now: not asked
        assert len(server.chat_requests) == calls
    expected = "Where must it be stored? (minimum length password)"
    assert first.question == second.question == expected and first.by == second.by == "keywords"


def test_an_external_generator_may_not_condense():
    with pytest.raises(ValueError, match="only local generators"):
        QuestionCondenser([OpenAIGenerator("gpt-4o-mini", base_url="http://127.0.0.1:9/v1", api_key="k")])
