"""The stand-in OpenAI-compatible server speaks Chat Completions as the official ``openai`` client reads it,
and each fault it can be told to produce reaches that client as a real server's or proxy's would: these
tests pin what the client raises for each fault, and how soon."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from standins.openai_server import OpenAIStandIn

MODEL = "gpt-4o-mini"
EXPECTED = "The HX-400 is a centrifugal pump rated for 400 litres per minute. [1]"
TIMEOUT = 0.5  # the client's timeout where a test waits for it
STALL = 20.0  # every stall is far longer than TIMEOUT: a test that waited for one would show it
SOON = 3.0  # the bound for "raised at once" / "raised at the timeout", generous for a loaded CI machine


@pytest.fixture
def openai_server() -> Iterator[OpenAIStandIn]:
    with OpenAIStandIn(models=[MODEL]) as server:
        yield server


def make_client(server: OpenAIStandIn, timeout: float = 10.0, max_retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="test", max_retries=max_retries, timeout=timeout)


def chat(client: openai.OpenAI, messages, model: str = MODEL, **kwargs):
    return client.chat.completions.create(model=model, messages=messages, **kwargs)


def since(started: float) -> float:
    return time.perf_counter() - started


# -- the protocol ---------------------------------------------------------------------------------


def test_completion_has_the_answer_and_usage_and_the_request_is_recorded(openai_server, request_hx400):
    client = make_client(openai_server)

    completion = chat(client, request_hx400.messages)

    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    (choice,) = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == EXPECTED
    assert choice.finish_reason == "stop"
    prompt_words = sum(len(m["content"].split()) for m in request_hx400.messages)
    assert completion.usage.prompt_tokens == prompt_words > 0
    assert completion.usage.completion_tokens == len(EXPECTED.split())
    assert completion.usage.total_tokens == prompt_words + len(EXPECTED.split())
    assert completion._request_id.startswith("req_")
    (record,) = openai_server.requests
    assert (record["method"], record["path"]) == ("POST", "/v1/chat/completions")
    assert record["headers"]["authorization"] == "Bearer test"
    assert record["body"]["model"] == MODEL
    assert record["body"]["messages"] == request_hx400.messages
    assert json.loads(record["raw"]) == record["body"]
    assert openai_server.chat_requests == [record]
    assert openai_server.calls == [("POST", "/v1/chat/completions")]


def test_stream_adds_up_to_the_completion_and_ends_with_usage_when_asked(openai_server, request_hx400):
    client = make_client(openai_server)

    whole = chat(client, request_hx400.messages).choices[0].message.content
    chunks = list(chat(client, request_hx400.messages, stream=True, stream_options={"include_usage": True}))

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    *with_choices, usage_chunk = chunks
    assert usage_chunk.choices == []
    assert usage_chunk.usage.completion_tokens == len(EXPECTED.split())
    assert usage_chunk.usage.prompt_tokens > 0
    assert all(c.usage is None for c in with_choices)
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in with_choices) == whole == EXPECTED
    assert len(with_choices) == 1 + len(EXPECTED.split()) + 1  # role, one per word, finish
    assert [c.choices[0].finish_reason for c in with_choices][-2:] == [None, "stop"]
    assert openai_server.chat_requests[-1]["body"]["stream"] is True


def test_stream_wire_format_and_no_usage_unless_asked(openai_server, request_hx400):
    body = {"model": MODEL, "messages": request_hx400.messages, "stream": True}

    response = httpx.post(openai_server.url + "/chat/completions", json=body, timeout=10)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    events = [event for event in response.text.split("\n\n") if event]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}


def test_models_list_and_retrieve(openai_server):
    openai_server.models = [MODEL, "gpt-4o"]
    client = make_client(openai_server)

    assert [m.id for m in client.models.list()] == [MODEL, "gpt-4o"]
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-9")
    assert caught.value.code == "model_not_found"
    assert openai_server.calls == [("GET", "/v1/models"), ("GET", "/v1/models/gpt-4o"), ("GET", "/v1/models/gpt-9")]


def test_an_unknown_route_is_a_404_like_openais(openai_server):
    response = httpx.post(openai_server.url + "/completions", json={"model": MODEL}, timeout=10)

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/completions)"


def test_received_text_undoes_json_escapes(openai_server):
    canary = 'Ünïcode "canary" 4111 1111'
    client = make_client(openai_server)

    chat(client, [{"role": "user", "content": [{"type": "text", "text": canary}]}])

    assert canary not in openai_server.requests[0]["raw"]  # JSON escaped it
    assert canary in openai_server.received_text()


# -- the faults -----------------------------------------------------------------------------------


def test_unknown_model_is_a_404_model_not_found(openai_server):
    client = make_client(openai_server)
    messages = [{"role": "user", "content": "hi"}]

    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as caught:
            chat(client, messages, model="gpt-9", stream=stream)
        assert caught.value.status_code == 404
        assert caught.value.code == "model_not_found"
        assert caught.value.type == "invalid_request_error"
        assert "The model `gpt-9` does not exist" in caught.value.message
    assert len(openai_server.chat_requests) == 2


def test_refused_connections_are_a_connection_error_at_once(openai_server, request_hx400):
    client = make_client(openai_server)
    chat(client, request_hx400.messages)  # leaves a keep-alive connection in the client's pool

    openai_server.refuse_connections = True
    for stream in (False, True):
        started = time.perf_counter()
        with pytest.raises(openai.APIConnectionError) as caught:
            chat(client, request_hx400.messages, stream=stream)
        assert since(started) < SOON
        assert not isinstance(caught.value, openai.APITimeoutError)
        assert "connect" in type(caught.value.__cause__).__name__.lower()  # httpx2.ConnectError: ECONNREFUSED

    assert len(openai_server.requests) == 1  # nothing reached it while it refused
    openai_server.refuse_connections = False  # listening again, on the same port
    assert chat(client, request_hx400.messages).choices[0].message.content == EXPECTED


def test_a_stall_before_the_first_token_times_out_the_request(openai_server, request_hx400):
    openai_server.stall_before_first_token = STALL
    client = make_client(openai_server, timeout=TIMEOUT)

    for stream in (False, True):
        started = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            chat(client, request_hx400.messages, stream=stream)  # no headers: create() itself times out
        assert TIMEOUT * 0.9 <= since(started) < TIMEOUT + SOON
    assert len(openai_server.chat_requests) == 2  # both reached it
    assert make_client(openai_server).models.list().data[0].id == MODEL  # other routes are not stalled


def test_a_stall_after_the_headers_times_out_the_first_read(openai_server, request_hx400):
    openai_server.stall_after_headers = STALL
    client = make_client(openai_server, timeout=TIMEOUT)

    started = time.perf_counter()
    stream = chat(client, request_hx400.messages, stream=True)  # 200 and headers came: create() returns
    returned = since(started)
    with pytest.raises(openai.APITimeoutError):
        next(iter(stream))

    assert returned < TIMEOUT
    assert TIMEOUT * 0.9 <= since(started) < TIMEOUT + SOON


def test_a_stall_after_the_first_token_times_out_mid_stream(openai_server, request_hx400):
    openai_server.stall_after_first_token = STALL
    client = make_client(openai_server, timeout=TIMEOUT)
    got = []

    started = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        for chunk in chat(client, request_hx400.messages, stream=True):
            got.append(chunk)  # noqa: PERF402 - a loop keeps the chunks that came before the error

    assert TIMEOUT * 0.9 <= since(started) < TIMEOUT + SOON
    assert "".join(c.choices[0].delta.content or "" for c in got) == "The"
    assert all(c.choices[0].finish_reason is None for c in got)


@pytest.mark.parametrize(
    ("status", "error", "kind", "code"),
    [
        (500, openai.InternalServerError, "server_error", None),
        (503, openai.InternalServerError, "server_error", None),
        (429, openai.RateLimitError, "requests", "rate_limit_exceeded"),
    ],
)
def test_a_forced_status_is_the_matching_error_with_openais_body(openai_server, request_hx400, status, error, kind,
                                                                  code):
    openai_server.fail_status = status
    client = make_client(openai_server)

    for stream in (False, True):
        started = time.perf_counter()
        with pytest.raises(error) as caught:
            chat(client, request_hx400.messages, stream=stream)
        assert since(started) < SOON
        assert caught.value.status_code == status
        assert (caught.value.type, caught.value.code) == (kind, code)
        assert caught.value.message.startswith(f"Error code: {status} - ")
        assert set(caught.value.body) == {"message", "type", "param", "code"}
        assert caught.value.response.headers.get("retry-after") == ("1" if status == 429 else None)
    assert len(openai_server.chat_requests) == 2  # max_retries=0: one attempt each


def test_the_client_retries_5xx_unless_told_not_to(openai_server, request_hx400):
    openai_server.fail_status = 503
    client = make_client(openai_server, max_retries=1)

    started = time.perf_counter()
    with pytest.raises(openai.InternalServerError):
        chat(client, request_hx400.messages)

    assert len(openai_server.chat_requests) == 2  # the SDK tried again, after a backoff of its own
    assert 0.3 <= since(started) < SOON
    openai_server.fail_status = 0
    assert chat(client, request_hx400.messages).choices[0].message.content == EXPECTED


def test_context_overflow_is_a_400_context_length_exceeded(openai_server, request_hx400):
    client = make_client(openai_server)
    openai_server.context_overflow = True

    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            chat(client, request_hx400.messages, stream=stream)
        assert caught.value.code == "context_length_exceeded"
        assert caught.value.param == "messages"
        assert "This model's maximum context length is 128000 tokens" in caught.value.message

    openai_server.context_overflow = False
    openai_server.context_window = 10  # the prompt is longer than 10 words: the same error, naturally
    with pytest.raises(openai.BadRequestError, match="maximum context length is 10 tokens"):
        chat(client, request_hx400.messages)
    openai_server.context_window = 100_000
    assert chat(client, request_hx400.messages).choices[0].message.content == EXPECTED


def test_a_malformed_stream_raises_a_json_error_mid_stream(openai_server, request_hx400):
    openai_server.malformed_stream = True
    client = make_client(openai_server)
    got = []

    with pytest.raises(json.JSONDecodeError):  # not an openai error: the SDK decodes each event as it comes
        for chunk in chat(client, request_hx400.messages, stream=True):
            got.append(chunk)  # noqa: PERF402 - a loop keeps the chunks that came before the error

    words = EXPECTED.split()
    assert "".join(c.choices[0].delta.content or "" for c in got) == " ".join(words[: len(words) // 2])
    assert chat(client, request_hx400.messages).choices[0].message.content == EXPECTED  # non-stream is whole


def test_a_stream_cut_mid_body_is_a_connection_error(openai_server, request_hx400):
    openai_server.cut_stream_after = 3
    client = make_client(openai_server)
    got = []

    started = time.perf_counter()
    with pytest.raises(openai.APIConnectionError) as caught:
        for chunk in chat(client, request_hx400.messages, stream=True):
            got.append(chunk)  # noqa: PERF402 - a loop keeps the chunks that came before the error

    assert since(started) < SOON
    assert not isinstance(caught.value, openai.APITimeoutError)
    assert "".join(c.choices[0].delta.content or "" for c in got) == "The HX-400 is"
    assert all(c.choices[0].finish_reason is None for c in got)


def test_a_stream_cut_cleanly_just_ends_without_finish_reason(openai_server, request_hx400):
    openai_server.cut_stream_after = 3
    openai_server.cut_stream_cleanly = True
    client = make_client(openai_server)

    got = list(chat(client, request_hx400.messages, stream=True, stream_options={"include_usage": True}))

    assert "".join(c.choices[0].delta.content or "" for c in got) == "The HX-400 is"
    assert [c.choices[0].finish_reason for c in got] == [None] * 4  # role + 3 words, no error raised
    assert all(c.usage is None for c in got)


def test_stop_cuts_a_stream_stall_short(request_hx400):
    server = OpenAIStandIn(models=[MODEL], stall_after_first_token=STALL).start()
    client = make_client(server, timeout=STALL * 2)
    stream = chat(client, request_hx400.messages, stream=True)
    next(iter(stream))  # the role chunk

    started = time.perf_counter()
    server.stop()
    with pytest.raises(openai.APIConnectionError):
        list(stream)

    assert since(started) < SOON
