"""The requests Open WebUI 0.12.4 sends to ``/v1/chat/completions`` (captured from a real one, see
tests/server/test_open_webui.py), and the ``source`` events it needs to show citations.

What it sends differently from the official SDK: its built-in ``tools`` (~25 kB of function specs) on
every chat request, ``stream_options: {"include_usage": true}`` when the model's *usage* capability is
on, the earlier answers (their "Sources:" list included) as assistant messages, and, unless turned off,
its background tasks (title, tags, follow-ups) as plain non-streaming requests with ``max_tokens``.
"""

from __future__ import annotations

import json

from enclave.contracts import Answer, Citation, ScoredChunk
from enclave.server.routers.chat import source_event, source_events

QUESTION = "How many days of paid leave do employees earn each month?"

# the built-in tools Open WebUI 0.12.4 sends (two of its 36, as sent)
OPEN_WEBUI_TOOLS = [
    {"type": "function", "function": {
        "name": "get_current_timestamp", "description": "Get the current Unix timestamp in seconds.",
        "parameters": {"properties": {}, "type": "object"}}},
    {"type": "function", "function": {
        "name": "search_knowledge_bases",
        "description": "Search the user's accessible knowledge bases by name and description to find\n"
                       "a relevant internal source.",
        "parameters": {"properties": {
            "query": {"description": "The search query to find matching knowledge bases", "type": "string"},
            "count": {"default": 5, "description": "Maximum number of results to return (default: 5)", "type": "integer"}},
            "required": ["query"], "type": "object"}}},
]


def data_lines(response) -> list[str]:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def test_open_webuis_streaming_chat_request_gets_its_source_events_and_the_usage_chunk(client):
    body = {"stream": True, "model": "enclave", "messages": [{"role": "user", "content": QUESTION}],
            "tools": OPEN_WEBUI_TOOLS, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = data_lines(response)
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]

    # OpenAI's include_usage: a last chunk with no choices carries the usage
    usage_chunk, stop = chunks[-1], chunks[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == stop["usage"]
    assert set(usage_chunk["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert stop["choices"][0]["finish_reason"] == "stop" and stop["citations"]

    # one source event per passage 1..highest [n], each on a chunk with an empty delta, before the stop chunk
    events = [c for c in chunks if "event" in c]
    assert events and all(c["choices"][0]["delta"] == {} for c in events)
    assert chunks.index(events[-1]) == len(chunks) - 3
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "2.25" in content and "Sources:" in content
    cited = {c["number"]: c for c in stop["citations"]}
    assert len(events) == max(cited)
    for number, citation in cited.items():
        source = events[number - 1]["event"]
        assert source["type"] == "source"
        assert source["data"]["document"] == [citation["text"]]
        assert source["data"]["source"]["name"].startswith(citation["title"])
        assert source["data"]["metadata"] == [{"source": f"{citation['doc_id']}#{citation['chunk']}",
                                               "name": source["data"]["source"]["name"]}]
        assert "url" not in source["data"]["source"]  # file:// uris: nothing Open WebUI could open


def test_a_follow_up_with_the_earlier_answer_and_its_sources_list(client):
    first = client.post("/v1/chat/completions", json={"model": "enclave", "messages": [{"role": "user", "content": QUESTION}]})
    earlier = first.json()["choices"][0]["message"]["content"]
    assert "Sources:" in earlier
    body = {"stream": True, "model": "enclave", "tools": OPEN_WEBUI_TOOLS, "messages": [
        {"role": "user", "content": QUESTION}, {"role": "assistant", "content": earlier},
        {"role": "user", "content": "How many unused days may be carried over?"}]}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        chunks = [json.loads(line) for line in data_lines(response)[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "10 unused days" in content and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "usage" in chunks[-1] and chunks[-1]["choices"]  # no stream_options: the usage stays on the stop chunk


def test_open_webuis_title_task_is_answered_as_a_question(client):
    """Open WebUI's background tasks reach the chat model unless turned off (ENABLE_TITLE_GENERATION=false...):
    Enclave has no way to tell them from a question, and answers them from the documents."""
    task = ("### Task:\nGenerate a concise title summarizing the chat history.\n### Output:\nJSON format: "
            f'{{ "title": "your concise title here" }}\n### Chat History:\n<chat_history>\nUSER: {QUESTION}\n'
            "ASSISTANT: \n</chat_history>")
    response = client.post("/v1/chat/completions", json={"model": "enclave", "stream": False, "max_tokens": 1000,
                                                          "messages": [{"role": "user", "content": task}]})
    assert response.status_code == 200 and response.json()["object"] == "chat.completion"


def _passage(number: int, uri: str = "file:///docs/handbook.md", section: str = "Leave") -> ScoredChunk:
    return ScoredChunk(id=f"p{number}", score=1.0 / number, text=f"passage {number}", doc_id=f"docs:{number}.md", source="docs",
                       title=f"doc {number}", uri=uri, section=section, chunk=number, classification="internal",
                       groups=("everyone",))


def _answer(text: str, cited: list[int], passages: int = 4) -> Answer:
    chunks = [_passage(n) for n in range(1, passages + 1)]
    citations = [Citation(n, p.doc_id, p.title, p.uri, p.section, p.chunk, p.text, p.score)
                 for n, p in enumerate(chunks, start=1) if n in cited]
    return Answer(question="q", text=text, citations=citations, passages=chunks, generator="g", model="m")


def test_source_events_cover_every_marker_by_position():
    # Open WebUI maps [n] to its n-th source: passages 1..3 for a [3], though [1] and [2] are not cited
    assert [e.data.document[0] for e in source_events(_answer("x [3]", [3]), "x [3]")] == [
        "passage 1", "passage 2", "passage 3"]
    # a streamed marker the final answer moved elsewhere still opens its passage
    assert len(source_events(_answer("x [1]", [1]), "x [2]")) == 2
    # no citations (an abstention): no sources; a marker past the passages is no passage
    assert source_events(_answer("The documents do not answer this question.", []), "[1]") == []
    assert len(source_events(_answer("x [1]", [1], passages=2), "x [1] [7]")) == 1


def test_a_source_links_only_http_documents_and_names_the_section():
    web = source_event(_passage(1, uri="https://wiki.example/leave", section="Leave > Carry-over"))
    assert web.data.source.url == "https://wiki.example/leave"
    assert web.data.source.name == "doc 1 — Leave > Carry-over" == web.data.metadata[0].name
    assert web.data.source.id == web.data.metadata[0].source == "docs:1.md#1"
    assert source_event(_passage(2, section="")).model_dump(exclude_none=True)["data"]["source"] == {
        "name": "doc 2", "id": "docs:2.md#2"}
