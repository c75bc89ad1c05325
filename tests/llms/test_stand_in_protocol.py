"""The stand-in Ollama speaks Ollama's wire protocol, as the official ``ollama`` client reads it."""

from __future__ import annotations

import json
import threading
import time

import httpx
import ollama
import pytest
from standins.ollama_server import (
    NO_ANSWER,
    OllamaStandIn,
    answer_for,
    first_passage_sentence,
)

MODEL = "llama3.1:8b"


def test_streamed_chunks_add_up_to_the_non_streaming_answer(ollama_server, request_hx400):
    client = ollama.Client(host=ollama_server.url, timeout=10)

    whole = client.chat(model=MODEL, messages=request_hx400.messages, stream=False)
    chunks = list(client.chat(model=MODEL, messages=request_hx400.messages, stream=True))

    assert whole.done is True
    assert whole.done_reason == "stop"
    assert whole.message.role == "assistant"
    assert whole.message.content == "The HX-400 is a centrifugal pump rated for 400 litres per minute. [1]"
    assert len(chunks) > 2
    assert "".join(c.message.content for c in chunks) == whole.message.content
    assert [c.done for c in chunks] == [False] * (len(chunks) - 1) + [True]
    last = chunks[-1]
    assert last.done_reason == "stop"
    assert last.eval_count == whole.eval_count == len(whole.message.content.split())
    assert last.prompt_eval_count == whole.prompt_eval_count > 0
    assert last.total_duration > 0
    assert [body["stream"] for body in ollama_server.requests] == [False, True]


def test_stream_is_the_default_when_absent(ollama_server, request_hx400):
    body = {"model": MODEL, "messages": request_hx400.messages}

    response = httpx.post(ollama_server.url + "/api/chat", json=body, timeout=10)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[-1]["done"] is True
    assert all(line["model"] == MODEL and line["created_at"].endswith("Z") for line in lines)
    assert "".join(line["message"]["content"] for line in lines).endswith(" [1]")


def test_non_streaming_json_fields(ollama_server, request_hx400):
    body = {"model": MODEL, "messages": request_hx400.messages, "stream": False}

    payload = httpx.post(ollama_server.url + "/api/chat", json=body, timeout=10).json()

    assert set(payload) >= {"model", "created_at", "message", "done", "done_reason", "total_duration",
                            "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
                            "eval_duration"}
    assert payload["message"] == {"role": "assistant", "content": payload["message"]["content"]}


def test_list_and_version(ollama_server):
    ollama_server.models = ["llama3.1:8b", "qwen2.5:7b-instruct"]
    client = ollama.Client(host=ollama_server.url, timeout=10)

    listed = client.list()

    assert [m.model for m in listed.models] == ["llama3.1:8b", "qwen2.5:7b-instruct"]
    assert all(m.details.format == "gguf" and m.size > 0 and m.digest for m in listed.models)
    version = httpx.get(ollama_server.url + "/api/version", timeout=10).json()
    assert version["version"].count(".") == 2
    assert ollama_server.calls[0] == ("GET", "/api/tags")


def test_unknown_model_is_a_404_like_ollamas(ollama_server):
    client = ollama.Client(host=ollama_server.url, timeout=10)

    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="phi3:mini", messages=[{"role": "user", "content": "hi"}], stream=False)

    assert caught.value.status_code == 404
    assert caught.value.error == 'model "phi3:mini" not found, try pulling it first'


def test_unknown_model_while_streaming_also_fails(ollama_server):
    client = ollama.Client(host=ollama_server.url, timeout=10)

    with pytest.raises(ollama.ResponseError) as caught:
        list(client.chat(model="phi3:mini", messages=[{"role": "user", "content": "hi"}], stream=True))

    assert caught.value.status_code == 404


def test_fail_status_answers_with_an_error_body(ollama_server):
    ollama_server.fail_status = 503
    response = httpx.post(ollama_server.url + "/api/chat", json={"model": MODEL, "messages": []}, timeout=10)

    assert response.status_code == 503
    assert "error" in response.json()
    ollama_server.fail_status = 0
    assert httpx.get(ollama_server.url + "/api/tags", timeout=10).status_code == 200


def test_stop_ends_a_stall_and_refuses_new_connections():
    server = OllamaStandIn(models=[MODEL], stall_seconds=30).start()
    url = server.url
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            httpx.get(url + "/api/version", timeout=60)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion below
            outcome.append(exc)

    asker = threading.Thread(target=ask)
    started = time.perf_counter()
    asker.start()
    while not server.calls and time.perf_counter() - started < 5:
        time.sleep(0.01)
    assert server.calls == [("GET", "/api/version")]
    server.stop()
    asker.join(timeout=10)

    assert not asker.is_alive()
    assert time.perf_counter() - started < 10  # not the 30 s stall
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.TransportError)
    server.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/api/version", timeout=2)


def test_answer_rules():
    prompt = (
        "Context passages:\n[1] Manual — Intro\n# Heading\nFirst sentence here. Second one.\n"
        "[2] Other\nNot this.\n\nQuestion: What?\n\nAnswer with citations like [1]."
    )
    assert first_passage_sentence(prompt) == "First sentence here."
    assert answer_for([{"role": "system", "content": "[1] rules"}, {"role": "user", "content": prompt}]) == (
        "First sentence here. [1]"
    )
    assert answer_for([{"role": "user", "content": "Context passages:\n(no passages were found)\n\nQuestion: x"}]) == (
        NO_ANSWER
    )
    assert answer_for([]) == NO_ANSWER


# -- the streaming faults, as the official client meets them ---------------------------------------

TIMEOUT = 0.5  # the client's timeout where a test waits for it
STALL = 20.0  # every stall is far longer than TIMEOUT
SOON = 3.0  # the bound for "raised at once" / "raised at the timeout", generous for a loaded CI machine


def since(started: float) -> float:
    return time.perf_counter() - started


def test_refused_connections_differ_streaming_or_not(ollama_server, request_hx400):
    client = ollama.Client(host=ollama_server.url, timeout=10)
    client.chat(model=MODEL, messages=request_hx400.messages, stream=False)  # a keep-alive connection in the pool

    ollama_server.refuse_connections = True
    started = time.perf_counter()
    with pytest.raises(ConnectionError, match="Failed to connect to Ollama"):  # the builtin: the client maps it
        client.chat(model=MODEL, messages=request_hx400.messages, stream=False)
    with pytest.raises(httpx.ConnectError):  # streaming, the client lets httpx's own error through
        list(client.chat(model=MODEL, messages=request_hx400.messages, stream=True))
    assert since(started) < SOON
    assert len(ollama_server.requests) == 1

    ollama_server.refuse_connections = False
    assert client.chat(model=MODEL, messages=request_hx400.messages, stream=False).message.content.endswith("[1]")


def test_a_stall_before_the_first_token_is_a_read_timeout(ollama_server, request_hx400):
    ollama_server.stall_before_first_token = STALL
    client = ollama.Client(host=ollama_server.url, timeout=TIMEOUT)

    def whole():
        return client.chat(model=MODEL, messages=request_hx400.messages, stream=False)

    def streamed():
        return list(client.chat(model=MODEL, messages=request_hx400.messages, stream=True))

    for ask in (whole, streamed):
        started = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):  # not wrapped by the client, streaming or not
            ask()
        assert TIMEOUT * 0.9 <= since(started) < TIMEOUT + SOON
    assert len(ollama_server.chat_requests) == 2
    assert [m.model for m in client.list().models] == [MODEL]  # only chats are stalled


def test_a_stall_after_the_first_token_is_a_read_timeout_mid_stream(ollama_server, request_hx400):
    ollama_server.stall_after_first_token = STALL
    client = ollama.Client(host=ollama_server.url, timeout=TIMEOUT)
    got = []

    started = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        for chunk in client.chat(model=MODEL, messages=request_hx400.messages, stream=True):
            got.append(chunk)  # noqa: PERF402 - a loop keeps the chunks that came before the error

    assert TIMEOUT * 0.9 <= since(started) < TIMEOUT + SOON
    assert [(c.message.content, c.done) for c in got] == [("The", False)]


def test_a_stream_cut_mid_body_is_a_protocol_error(ollama_server, request_hx400):
    ollama_server.cut_stream_after = 3
    client = ollama.Client(host=ollama_server.url, timeout=10)
    got = []

    started = time.perf_counter()
    with pytest.raises(httpx.RemoteProtocolError):
        for chunk in client.chat(model=MODEL, messages=request_hx400.messages, stream=True):
            got.append(chunk)  # noqa: PERF402 - a loop keeps the chunks that came before the error

    assert since(started) < SOON
    assert "".join(c.message.content for c in got) == "The HX-400 is"
    assert not any(c.done for c in got)


def test_a_stream_cut_cleanly_just_ends_without_done(ollama_server, request_hx400):
    ollama_server.cut_stream_after = 3
    ollama_server.cut_stream_cleanly = True
    client = ollama.Client(host=ollama_server.url, timeout=10)

    got = list(client.chat(model=MODEL, messages=request_hx400.messages, stream=True))

    assert "".join(c.message.content for c in got) == "The HX-400 is"
    assert [c.done for c in got] == [False] * 3  # no error: only the missing done line tells


def test_a_malformed_line_raises_a_json_error_mid_stream(ollama_server, request_hx400):
    ollama_server.malformed_stream = True
    client = ollama.Client(host=ollama_server.url, timeout=10)
    got = []

    with pytest.raises(json.JSONDecodeError):
        for chunk in client.chat(model=MODEL, messages=request_hx400.messages, stream=True):
            got.append(chunk)  # noqa: PERF402 - a loop keeps the chunks that came before the error

    assert [c.message.content for c in got] == ["The", " HX-400", " is", " a", " centrifugal", " pump"]
    whole = client.chat(model=MODEL, messages=request_hx400.messages, stream=False)  # non-stream is whole
    assert whole.message.content == "The HX-400 is a centrifugal pump rated for 400 litres per minute. [1]"


def test_faults_set_at_construction_apply_from_the_start(request_hx400):
    with OllamaStandIn(models=[MODEL], refuse_connections=True, cut_stream_after=1) as server:
        client = ollama.Client(host=server.url, timeout=10)
        with pytest.raises(ConnectionError):
            client.chat(model=MODEL, messages=request_hx400.messages, stream=False)
        server.refuse_connections = False
        got = []
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in client.chat(model=MODEL, messages=request_hx400.messages, stream=True):
                got.append(chunk)  # noqa: PERF402 - a loop keeps the chunks that came before the error
        assert [c.message.content for c in got] == ["The"]
