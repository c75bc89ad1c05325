"""The HTTP API over a real index: native /v1/ask, OpenAI-compatible chat, models, health, errors, ACL."""

from __future__ import annotations

import json

from server_auth import server_settings

CANARY_TOKEN = "CANARY-BOARD-7731"


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_models_lists_the_route(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["enclave", "enclave/ollama", "enclave/extractive"]
    assert "ollama -> extractive" in body["data"][0]["owned_by"]
    assert [m["generators"] for m in body["data"]] == [["ollama", "extractive"], ["ollama"], ["extractive"]]


def test_a_model_picks_the_route_and_an_unknown_one_is_404(client):
    question = [{"role": "user", "content": "What is the minimum length for a password?"}]
    alone = client.post("/v1/chat/completions", json={"model": "enclave/extractive", "messages": question}).json()
    assert alone["generator"] == "extractive" and "14 characters" in alone["choices"][0]["message"]["content"]
    # ollama alone is down here: nothing else may answer in its place
    assert client.post("/v1/chat/completions", json={"model": "enclave/ollama", "messages": question}).status_code == 503
    unknown = client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": question})
    assert unknown.status_code == 404 and "enclave/extractive" in unknown.json()["detail"]


def test_ask_cites_the_document_that_holds_the_answer(client):
    response = client.post("/v1/ask", json={"question": "What is the minimum length for a password?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "14 characters" in body["answer"]
    assert any(c["uri"].endswith("/it-security-policy.md") for c in body["citations"])
    for citation in body["citations"]:
        assert f"[{citation['number']}]" in body["answer"]
        assert citation["uri"].startswith("file://") and citation["text"]
    assert body["generator"] == "extractive" and body["answered"] is True and body["abstention"] == ""
    assert [a["generator"] for a in body["route"]] == ["ollama", "extractive"]
    # Ollama is down: refused, or (after repeated refusals in this session's shared pipeline) skipped by its breaker
    assert "cannot connect" in body["route"][0]["error"] or body["route"][0]["error"].startswith("skipped: failing")


def test_a_question_the_documents_do_not_answer_is_refused_in_every_endpoint(client):
    question = "What was the root cause of incident INC-3107?"  # the documents hold the post-mortem of INC-2291
    body = client.post("/v1/ask", json={"question": question}).json()
    assert body["answered"] is False and body["citations"] == [] and body["route"] == []
    assert body["answer"] == "The documents do not answer this question."
    assert "inc-3107" in body["abstention"]
    chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": question}]}).json()
    assert chat["answered"] is False and chat["citations"] == []
    assert chat["choices"][0]["message"]["content"] == "The documents do not answer this question."
    with client.stream("POST", "/v1/chat/completions", json={
            "messages": [{"role": "user", "content": question}], "stream": True}) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
    assert events[-1]["answered"] is False
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == "The documents do not answer this question."
    answered = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "What was the root "
                                                                      "cause of incident INC-2291?"}]}).json()
    assert answered["answered"] is True and answered["citations"]


def test_ask_rejects_bad_requests_with_4xx(client):
    assert client.post("/v1/ask", json={"question": "   "}).status_code == 422
    assert client.post("/v1/ask", json={}).status_code == 422
    assert client.post("/v1/ask", json={"question": "x", "top_k": 0}).status_code == 422
    assert client.post("/v1/ask", content=b"not json", headers={"content-type": "application/json"}).status_code == 422


def test_ask_narrows_retrieval_by_the_callers_filter(client):
    question = {"question": "What is the minimum length for a password?", "top_k": 10}
    only_pdf = client.post("/v1/ask", json={**question, "filter": {"doc_types": ["pdf"]}})
    assert only_pdf.status_code == 200, only_pdf.text
    # the policy is a .md file: filtered out, so the PDFs left do not answer and Enclave says so
    assert only_pdf.json()["answered"] is False and "14 characters" not in only_pdf.json()["answer"]
    agency = {"question": "Which travel agency books flights, hotels and train tickets?", "top_k": 10}
    uris = [c["uri"] for c in client.post("/v1/ask", json={**agency, "filter": {"doc_types": ["pdf"]}}).json()["citations"]]
    assert uris and all(uri.endswith(".pdf") for uri in uris)
    # files are modified when the test copies them, never in 2001
    assert client.post("/v1/ask", json={**question, "filter": {"modified_to": "2001-01-01T00:00:00Z"}}).json()["citations"] == []
    recent = client.post("/v1/ask", json={**question,
                                          "filter": {"modified_from": "2001-01-01T00:00:00Z", "sources": ["halvard"]}})
    assert any(c["uri"].endswith("/it-security-policy.md") for c in recent.json()["citations"])
    assert client.post("/v1/ask", json={**question, "filter": {"sources": ["nope"]}}).json()["citations"] == []
    bad_range = {"modified_from": "2026-02-01T00:00:00Z", "modified_to": "2026-01-01T00:00:00Z"}
    assert client.post("/v1/ask", json={**question, "filter": bad_range}).status_code == 422
    assert client.post("/v1/ask", json={**question, "filter": {"modified_from": "last tuesday"}}).status_code == 422
    # the OpenAI-compatible endpoint takes the same filter as an extension field (extra_body in OpenAI clients)
    chat = client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": agency["question"]}], "filter": {"doc_types": ["pdf"]}})
    assert chat.status_code == 200, chat.text
    assert chat.json()["citations"] and all(c["uri"].endswith(".pdf") for c in chat.json()["citations"])


def test_chat_completion_is_openai_shaped_with_citations(client):
    response = client.post("/v1/chat/completions", json={
        "model": "enclave",
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "What is the street address of the Tromsø office?"}],
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    content = body["choices"][0]["message"]["content"]
    assert "Storgata 14" in content
    assert "Sources:" in content and "office-locations.html" in content
    assert any(c["uri"].endswith("/office-locations.html") for c in body["citations"])
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_chat_completion_streams_server_sent_events(client):
    with client.stream("POST", "/v1/chat/completions", json={
        "messages": [{"role": "user", "content": [{"type": "text", "text": "How long is the standard warranty?"}]}],
        "stream": True,
    }) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "36" in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_chat_without_a_user_message_is_422(client):
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "system", "content": "hi"}]})
    assert response.status_code == 422
    assert "user message" in response.json()["detail"]


def test_documents_outside_the_callers_groups_never_appear(client, halvard_pipeline):
    # the board's document is in the index ...
    board_only = halvard_pipeline.retriever.run("acquisition of Fjordlys Optics", groups=["board"])
    assert any(CANARY_TOKEN in c.text for c in board_only)
    # ... but an anonymous caller (groups: everyone) never sees it, whatever the request says
    for request in (
        {"question": "When does the acquisition of Fjordlys Optics close? What is the board's canary code?"},
        {"question": "Board minutes confidential acquisition", "top_k": 50},
    ):
        body = client.post("/v1/ask", json=request).json()
        assert CANARY_TOKEN not in json.dumps(body)
    chat = client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "What do the board minutes say about Fjordlys Optics?"}],
        "user": "board",
    }).json()
    assert CANARY_TOKEN not in json.dumps(chat)


def test_with_ollama_up_the_answer_comes_from_the_model_with_its_citation(halvard_settings, halvard_pipeline):
    from fastapi.testclient import TestClient
    from standins.ollama_server import OllamaStandIn

    from enclave.flows.answer_pipeline import AnswerPipeline
    from enclave.llms import ExtractiveGenerator, FallbackRouter, OllamaGenerator
    from enclave.server.app import create_app

    with OllamaStandIn(models=["llama3.1:8b"]) as ollama_server:
        chain = FallbackRouter([OllamaGenerator("llama3.1:8b", host=ollama_server.url, timeout=10), ExtractiveGenerator()])
        pipeline = AnswerPipeline(halvard_pipeline.retriever, chain)
        with TestClient(create_app(server_settings(halvard_settings), pipeline=pipeline)) as client:
            body = client.post("/v1/ask", json={"question": "What is the minimum length for a password?"}).json()
        assert body.get("generator") == "ollama", body
        [request] = ollama_server.chat_requests
    assert body["generator"] == "ollama" and body["model"] == "llama3.1:8b"
    assert body["answer"].endswith("[1]") and [c["number"] for c in body["citations"]] == [1]
    assert body["tokens_in"] > 0 and body["tokens_out"] > 0
    # the prompt the model saw holds the numbered passages and the question
    prompt = request["messages"][-1]["content"]
    assert prompt.startswith("Passages:") and "[1] " in prompt and "minimum length for a password" in prompt


def test_retrieve_returns_the_chunks_the_caller_may_see(client):
    response = client.post("/v1/retrieve", json={"query": "minimum length for a password", "top_k": 5})
    assert response.status_code == 200, response.text
    chunks = response.json()["chunks"]
    assert chunks[0]["uri"].endswith("/it-security-policy.md") and "14 characters" in chunks[0]["text"]
    assert [c["score"] for c in chunks] == sorted((c["score"] for c in chunks), reverse=True)
    assert set(chunks[0]) == {"id", "doc_id", "title", "uri", "section", "chunk", "text", "score", "classification"}
    for mode in ("hybrid", "dense", "sparse"):  # the board's document is outside the anonymous caller's groups
        query = f"{CANARY_TOKEN} When does the acquisition of Fjordlys Optics close?"
        found = client.post("/v1/retrieve", json={"query": query, "top_k": 100, "mode": mode}).json()["chunks"]
        assert not any(CANARY_TOKEN in c["text"] for c in found), mode
        assert found or mode == "sparse"  # dense always finds something; BM25 only chunks sharing a term
    only_pdf = client.post("/v1/retrieve", json={"query": "warranty", "top_k": 20, "filter": {"doc_types": ["pdf"]}})
    assert {c["uri"].rsplit(".", 1)[1] for c in only_pdf.json()["chunks"]} == {"pdf"}
    for bad in ({"query": "  "}, {"query": "x", "top_k": 0}, {"query": "x", "mode": "fuzzy"}, {}):
        assert client.post("/v1/retrieve", json=bad).status_code == 422, bad
