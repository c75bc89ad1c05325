"""Follow-up questions over HTTP: condensed with the history by the local model before retrieval (the
answering generator sees the standalone question, not the history); without a model, the history's keywords."""

from __future__ import annotations

from fastapi.testclient import TestClient
from server_auth import bearer, server_settings
from standins.ollama_server import OllamaStandIn

from enclave.flows.answer_pipeline import AnswerPipeline
from enclave.llms import ExtractiveGenerator, FallbackRouter, OllamaGenerator
from enclave.llms.question_condenser import QuestionCondenser
from enclave.server.app import create_app

FIRST = "Where is the Tromsø office?"
HISTORY = [{"role": "user", "content": FIRST},
           {"role": "assistant", "content": "Storgata 14, 9008 Tromsø [1].\n\nSources:\n[1] office-locations.html"}]


def test_the_local_model_condenses_a_follow_up_before_retrieval(halvard_settings, halvard_pipeline):
    with OllamaStandIn(models=["llama3.1:8b"]) as ollama:
        generator = OllamaGenerator("llama3.1:8b", host=ollama.url, timeout=10)
        chain = FallbackRouter([generator, ExtractiveGenerator()])
        pipeline = AnswerPipeline(halvard_pipeline.retriever, chain, condenser=QuestionCondenser([generator]))
        with TestClient(create_app(server_settings(halvard_settings), pipeline=pipeline)) as client:
            native = client.post("/v1/ask", json={"question": "What are its opening hours?", "history": HISTORY},
                                 headers=bearer("ola")).json()
            condense, answer = ollama.chat_requests
            chat = client.post("/v1/chat/completions", headers=bearer("ola"), json={"messages": [
                {"role": "system", "content": "Be brief."}, *HISTORY,
                {"role": "user", "content": "What are its opening hours?"}]}).json()
            condense_again = ollama.chat_requests[2]
    standalone = f"What are its opening hours? (about: {FIRST})"
    assert native["question"] == standalone and native["generator"] == "ollama"
    assert "Follow-up question: What are its opening hours?" in condense["messages"][-1]["content"]
    assert "Sources:" not in condense["messages"][-1]["content"]  # the appended source list is not history
    # the answering call got the standalone question and passages, and no history turns
    assert [m["role"] for m in answer["messages"]] == ["system", "user"]
    assert standalone in answer["messages"][-1]["content"]
    assert any(c["uri"].endswith("/office-locations.html") for c in native["citations"])
    # the OpenAI-compatible endpoint takes its history from the messages before the last user message
    assert condense_again["messages"] == condense["messages"]
    assert any(c["uri"].endswith("/office-locations.html") for c in chat["citations"])


def test_without_a_model_the_follow_up_gets_the_history_keywords(client):
    follow_up = client.post("/v1/ask", json={"question": "And the minimum length?", "history": [
        {"role": "user", "content": "What does the IT security policy say about passwords?"},
        {"role": "assistant", "content": "Store them in Vaultkeep [1]."}]}).json()
    assert follow_up["question"] == "And the minimum length? (security policy passwords)"
    assert "14 characters" in follow_up["answer"]
    alone = client.post("/v1/ask", json={"question": "And the minimum length?"}).json()
    assert alone["question"] == "And the minimum length?"
