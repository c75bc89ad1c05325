"""Answers stream as the generator writes them: /v1/ask's events and OpenAI's chunks, a generator that
fails mid-answer, no generator at all, and the official ``openai`` SDK against a real uvicorn."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from live_server import serving
from server_auth import KEYS, bearer, server_settings
from standins.ollama_server import OllamaStandIn

from enclave.flows.answer_pipeline import AnswerPipeline
from enclave.llms import ExtractiveGenerator, FallbackRouter, OllamaGenerator
from enclave.server.app import create_app

QUESTION = "What is the minimum length for a password?"


@pytest.fixture()
def ollama():
    with OllamaStandIn(models=["llama3.1:8b"]) as server:
        yield server


@pytest.fixture()
def app(halvard_settings, halvard_pipeline, ollama):
    """The app over the halvard index with the route stand-in Ollama → extractive."""
    chain = FallbackRouter([OllamaGenerator("llama3.1:8b", host=ollama.url, timeout=10), ExtractiveGenerator()])
    return create_app(server_settings(halvard_settings), pipeline=AnswerPipeline(halvard_pipeline.retriever, chain))


def sse_events(response: httpx.Response) -> list[tuple[str, dict, float]]:
    """``(event, data, seconds since the request)`` of each server-sent event, as it arrived."""
    started, events, name = time.perf_counter(), [], "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: "):]), time.perf_counter() - started))
            name = "message"
    return events


def test_ask_streams_tokens_as_the_model_writes_them(app, ollama):
    ollama.token_seconds = 0.05
    with TestClient(app) as client, client.stream(
            "POST", "/v1/ask", json={"question": QUESTION, "stream": True}, headers=bearer("ola")) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    names = [name for name, _, _ in events]
    assert names[-1] == "answer" and set(names[:-1]) == {"token"} and len(names) > 5
    tokens = [data["text"] for name, data, _ in events if name == "token"]
    answer = events[-1][1]
    assert "".join(tokens).strip() == answer["answer"] and "14 characters" in answer["answer"]
    assert answer["generator"] == "ollama" and [c["number"] for c in answer["citations"]] == [1]
    # the first word arrived while the model was still writing: about 0.05 s a word for the rest
    first, last = events[0][2], events[-2][2]
    assert last - first >= 0.05 * (len(tokens) - 2)


def test_a_generator_failing_mid_answer_restarts_the_stream_with_the_next(app, ollama):
    ollama.cut_stream_after = 3
    with TestClient(app) as client, client.stream(
            "POST", "/v1/ask", json={"question": QUESTION, "stream": True}, headers=bearer("ola")) as response:
        events = sse_events(response)
    names = [name for name, _, _ in events]
    restart = names.index("restart")
    assert names[:restart] == ["token"] * 3 and events[restart][1]["generator"] == "ollama"
    after = "".join(data["text"] for name, data, _ in events[restart:] if name == "token")
    answer = events[-1][1]
    assert names[-1] == "answer" and answer["generator"] == "extractive" and after.strip() == answer["answer"]
    assert [a["generator"] for a in answer["route"]] == ["ollama", "extractive"] and answer["route"][0]["error"]
    # the OpenAI stream cannot take text back: a notice in the content, then the next generator's answer
    body = {"messages": [{"role": "user", "content": QUESTION}], "stream": True}
    with TestClient(app) as client, client.stream("POST", "/v1/chat/completions", json=body,
                                                  headers=bearer("ola")) as response:
        lines = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    before, notice, after = content.partition("; the answer starts again:]")
    assert notice and "[ollama stopped mid-answer (the stream broke" in before
    assert chunks[-1]["generator"] == "extractive" and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "Sources:" in after and all(f"[{c['number']}]" in after for c in chunks[-1]["citations"])


def test_no_generator_before_the_first_token_is_a_503_not_a_broken_stream(halvard_settings, halvard_pipeline, ollama):
    ollama.fail_status = 500
    chain = FallbackRouter([OllamaGenerator("llama3.1:8b", host=ollama.url, timeout=5)])
    app = create_app(server_settings(halvard_settings), pipeline=AnswerPipeline(halvard_pipeline.retriever, chain))
    with TestClient(app) as client:
        for path, body in (("/v1/ask", {"question": QUESTION, "stream": True}),
                           ("/v1/chat/completions", {"messages": [{"role": "user", "content": QUESTION}], "stream": True})):
            response = client.post(path, json=body, headers=bearer("ola"))
            assert response.status_code == 503 and "ollama" in response.json()["detail"], path


def test_the_openai_sdk_works_unchanged_streaming_or_not(app, ollama):
    ollama.token_seconds = 0.01
    with serving(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEYS["ola"][0], max_retries=0)
        assert [m.id for m in client.models.list()] == ["enclave", "enclave/ollama", "enclave/extractive"]
        completion = client.chat.completions.create(model="enclave", messages=[{"role": "user", "content": QUESTION}])
        content = completion.choices[0].message.content
        assert "14 characters" in content and "[1]" in content and "Sources:" in content
        assert completion.model_extra["citations"][0]["uri"].endswith("/it-security-policy.md")
        stream = client.chat.completions.create(model="enclave", stream=True,
                                                messages=[{"role": "user", "content": QUESTION}])
        chunks = list(stream)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len(chunks) > 5 and streamed == content
        assert chunks[-1].model_extra["citations"] == completion.model_extra["citations"]
        only_pdf = client.chat.completions.create(model="enclave/extractive", extra_body={"filter": {"doc_types": ["pdf"]}},
                                                  messages=[{"role": "user", "content": QUESTION}])
        assert all(c["uri"].endswith(".pdf") for c in only_pdf.model_extra["citations"])
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="enc-wrong", max_retries=0).models.list()
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])
