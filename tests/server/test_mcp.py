"""The MCP server (server/mcp_server.py) through the official SDK's client: Streamable HTTP on a real
uvicorn serving ``create_app`` over the halvard index, and stdio through ``enclave mcp`` in a subprocess.
Who may see what is the same as on every other endpoint (the leak test in test_access_control.py
attacks the MCP tools too)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from live_server import serving
from mcp import Client, StdioServerParameters
from mcp_client import error_text, over_http, resource_json, structured
from server_auth import KEYS, bearer, server_settings
from settings_files import write_settings

from enclave.server.app import create_app
from enclave.server.authentication import AuthError, Principal
from enclave.server.mcp_server import McpUnavailable, document_uri, stdio_principal
from enclave.settings import LimitSettings, McpSettings, ServerSettings, Settings, SourceSettings

pytestmark = pytest.mark.timeout(300)

CANARY = "CANARY-BOARD-7731"  # in the board-only document of the halvard_settings fixture (tests/conftest.py)

QUESTION = "How many days of paid leave do employees earn each month?"


@pytest.fixture(scope="module")
def mcp_url(halvard_settings, halvard_pipeline):
    with serving(create_app(server_settings(halvard_settings), pipeline=halvard_pipeline)) as base:
        yield base + "/mcp"


def test_the_tools_and_the_document_template_are_listed(mcp_url):
    async def session(client: Client):
        return await client.list_tools(), await client.list_resource_templates()

    tools, templates = over_http(mcp_url, bearer("ola"), session)
    assert {t.name for t in tools.tools} == {"search", "ask", "list_sources"}
    assert all(t.annotations.read_only_hint and not t.annotations.destructive_hint for t in tools.tools)
    search = next(t for t in tools.tools if t.name == "search")
    assert {"query", "top_k", "mode", "filter"} <= set(search.input_schema["properties"])
    assert search.output_schema is not None  # structured results: the same fields as /v1/retrieve
    assert [t.uri_template for t in templates.resource_templates] == ["enclave://documents/{doc_id}"]


def test_search_finds_the_passage_with_title_uri_section_and_score_and_reads_its_document(mcp_url):
    async def session(client: Client):
        found = structured(await client.call_tool("search", {"query": QUESTION, "top_k": 3}))
        document = resource_json(await client.read_resource(found["chunks"][0]["resource"]))
        sparse = structured(await client.call_tool("search", {"query": QUESTION, "mode": "sparse", "top_k": 3}))
        only_pdf = structured(await client.call_tool("search", {"query": QUESTION, "filter": {"doc_types": ["pdf"]}}))
        return found, document, sparse, only_pdf

    found, document, sparse, only_pdf = over_http(mcp_url, bearer("ola"), session)
    best = found["chunks"][0]
    assert len(found["chunks"]) == 3
    assert best["title"] and best["uri"].endswith("employee-handbook.md") and best["section"] and best["score"] > 0
    assert "2.25" in best["text"]
    assert best["resource"] == document_uri(best["doc_id"])
    assert document["doc_id"] == best["doc_id"] and document["uri"] == best["uri"]
    assert [c["chunk"] for c in document["chunks"]] == sorted(c["chunk"] for c in document["chunks"])
    assert any("2.25" in c["text"] for c in document["chunks"])
    assert sparse["chunks"][0]["uri"].endswith("employee-handbook.md")
    assert only_pdf["chunks"] and all(c["uri"].endswith(".pdf") for c in only_pdf["chunks"])


def test_ask_gives_a_cited_answer_with_its_route_and_counts_it_in_the_metrics(mcp_url):
    async def session(client: Client):
        return structured(await client.call_tool("ask", {"question": QUESTION}))

    def extractive_answers() -> float:
        metrics = httpx.get(mcp_url.removesuffix("/mcp") + "/metrics").text
        line = next((x for x in metrics.splitlines() if x.startswith('enclave_answers_total{generator="extractive"}')), "")
        return float(line.split()[-1]) if line else 0.0

    before = extractive_answers()
    answer = over_http(mcp_url, bearer("ola"), session)
    assert extractive_answers() == before + 1
    assert answer["answered"] is True and "2.25" in answer["answer"]
    assert answer["citations"] and answer["citations"][0]["uri"].endswith("employee-handbook.md")
    assert answer["generator"] == "extractive"
    assert [a["generator"] for a in answer["route"]][-1] == "extractive"
    assert answer["route"][0]["generator"] == "ollama" and answer["route"][0]["outcome"] in ("failed", "skipped")


def test_ask_says_when_the_documents_do_not_answer(mcp_url):
    async def session(client: Client):
        return structured(await client.call_tool("ask", {"question": "Who won the 1998 football world cup?"}))

    answer = over_http(mcp_url, bearer("ola"), session)
    assert answer["answered"] is False and answer["citations"] == [] and answer["abstention"]


def test_list_sources_shows_only_what_the_caller_may_see(mcp_url):
    async def session(client: Client):
        return structured(await client.call_tool("list_sources", {}))

    everyone = over_http(mcp_url, bearer("ola"), session)["sources"]
    board = over_http(mcp_url, bearer("bente"), session)["sources"]
    assert [s["name"] for s in everyone] == ["halvard"]
    assert [s["name"] for s in board] == ["board", "halvard"]
    halvard = everyone[0]
    assert halvard["documents"] == len(list(Path(__file__).parents[2].joinpath("examples/halvard").iterdir()))
    assert halvard["chunks"] >= halvard["documents"] and halvard["last_synced"]


def test_the_board_document_is_hidden_from_other_groups_in_every_tool(mcp_url):
    async def session(client: Client):
        hits = structured(await client.call_tool("search", {"query": "acquisition of Fjordlys Optics", "top_k": 100}))
        answer = structured(await client.call_tool("ask", {"question": "When does the acquisition of Fjordlys Optics close?"}))
        return hits, answer

    async def board_session(client: Client):
        hits = structured(await client.call_tool("search", {"query": "acquisition of Fjordlys Optics", "top_k": 1}))
        return hits, await client.read_resource(hits["chunks"][0]["resource"])

    hits, answer = over_http(mcp_url, bearer("ola"), session)
    assert CANARY not in str(hits) and CANARY not in str(answer)
    board_hits, document = over_http(mcp_url, bearer("bente"), board_session)
    assert CANARY in board_hits["chunks"][0]["text"] and CANARY in document.contents[0].text
    board_resource = board_hits["chunks"][0]["resource"]

    async def read_hidden(client: Client):
        with pytest.raises(Exception) as raised:
            await client.read_resource(board_resource)
        with pytest.raises(Exception) as missing:
            await client.read_resource(document_uri("halvard:no-such-document.md"))
        return str(raised.value), str(missing.value)

    hidden, missing = over_http(mcp_url, bearer("ola"), read_hidden)
    assert CANARY not in hidden and "no document" in hidden
    assert hidden.replace(board_resource, "X").split("no document")[0] == missing.split("no document")[0]


def test_bad_input_is_a_tool_error_not_a_crash(mcp_url):
    async def session(client: Client):
        blank = await client.call_tool("search", {"query": "   "})
        too_long = await client.call_tool("ask", {"question": "why " * 2000})
        bad_mode = await client.call_tool("search", {"query": "leave", "mode": "fuzzy"})
        return blank, too_long, bad_mode

    blank, too_long, bad_mode = over_http(mcp_url, bearer("ola"), session)
    assert "blank" in error_text(blank)
    assert "limit" in error_text(too_long)
    assert bad_mode.is_error


def test_without_credentials_or_with_a_wrong_key_the_transport_answers_401(halvard_settings, halvard_pipeline):
    settings = server_settings(halvard_settings, anonymous=False)
    with serving(create_app(settings, pipeline=halvard_pipeline)) as base:
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        headers = {"Accept": "application/json, text/event-stream"}
        none = httpx.post(base + "/mcp", json=initialize, headers=headers)
        wrong = httpx.post(base + "/mcp", json=initialize, headers={**headers, **bearer("enc-wrong")})
        right = httpx.post(base + "/mcp", json=initialize, headers={**headers, **bearer("ola")})
    assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"
    assert right.status_code == 200


def test_search_and_ask_count_against_the_callers_rate_limit(halvard_settings, halvard_pipeline):
    settings = server_settings(halvard_settings, limits=LimitSettings(requests_per_minute=1, burst=2))
    with serving(create_app(settings, pipeline=halvard_pipeline)) as base:
        async def session(client: Client):
            return [await client.call_tool("search", {"query": "paid leave"}) for _ in range(3)]

        first, second, third = over_http(base + "/mcp", bearer("ola"), session)
    assert not first.is_error and not second.is_error
    assert "rate limit" in error_text(third)


def test_mcp_can_be_switched_off(halvard_settings, halvard_pipeline):
    settings = server_settings(halvard_settings)
    settings = settings.model_copy(update={"server": settings.server.model_copy(update={"mcp": McpSettings(enabled=False)})})
    with serving(create_app(settings, pipeline=halvard_pipeline)) as base:
        assert httpx.post(base + "/mcp", json={}).status_code == 404


def test_the_stdio_principal_is_the_api_key_or_the_configured_one():
    settings = server_settings(Settings())
    assert stdio_principal(settings, {"ENCLAVE_API_KEY": KEYS["bente"][0]}).groups == ("everyone", "board")
    with pytest.raises(AuthError):
        stdio_principal(settings, {"ENCLAVE_API_KEY": "enc-nobody"})
    with pytest.raises(McpUnavailable):
        stdio_principal(settings, {})
    configured = Settings(server=ServerSettings(mcp=McpSettings(principal="desk", groups=["everyone"])))
    assert stdio_principal(configured, {}) == Principal("desk", ("everyone",), "configured", "mcp:desk")


@pytest.mark.slow
def test_enclave_mcp_over_stdio_answers_as_its_api_key(tmp_path, halvard_settings, embedder):
    """`enclave mcp` in a subprocess, over the SDK's stdio client: a small index of its own (the session's
    halvard index is open in this process), searched and asked as the key's principal."""
    from enclave.flows import IngestPipeline, index_path
    from enclave.indexes import EdgeIndex

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nEmployees earn 2.25 days of paid leave each month.\n", encoding="utf-8")
    (docs / "board.md").write_text(f"# Board\n\n{CANARY}.\n", encoding="utf-8")
    settings = server_settings(halvard_settings).model_copy(update={"data_dir": tmp_path / "data", "sources": [
        SourceSettings(name="docs", path=docs, groups=["everyone"], include=["leave.md"]),
        SourceSettings(name="board", path=docs, groups=["board"], include=["board.md"])]})
    index = EdgeIndex(index_path(settings), embedder.dimension)
    try:
        with IngestPipeline.from_settings(settings, index=index, embedder=embedder) as ingesting:
            for source in settings.sources:
                ingesting.run(source)
    finally:
        index.close()
    config = write_settings(settings, tmp_path)
    enclave = str(Path(sys.executable).with_name("enclave"))

    def run(key: str):
        params = StdioServerParameters(command=enclave, args=["mcp", "--config", str(config)],
                                       env={**os.environ, "ENCLAVE_API_KEY": key, "HF_HUB_OFFLINE": "1"})

        async def session(client: Client):
            hits = structured(await client.call_tool("search", {"query": "paid leave each month", "top_k": 5}))
            answer = structured(await client.call_tool("ask", {"question": QUESTION}))
            sources = structured(await client.call_tool("list_sources", {}))
            return hits, answer, sources

        async def main():
            async with Client(params) as client:
                return await session(client)

        return asyncio.run(main())

    hits, answer, sources = run(KEYS["ola"][0])
    assert hits["chunks"][0]["uri"].endswith("leave.md") and CANARY not in str(hits)
    assert answer["answered"] and "2.25" in answer["answer"] and answer["citations"][0]["uri"].endswith("leave.md")
    assert [s["name"] for s in sources["sources"]] == ["docs"]
    board_hits, _, board_sources = run(KEYS["bente"][0])
    assert CANARY in str(board_hits) and [s["name"] for s in board_sources["sources"]] == ["board", "docs"]


@pytest.mark.slow  # the real CLI in a subprocess: ~4 s of imports
def test_enclave_mcp_without_a_principal_refuses_to_start(tmp_path):
    config = write_settings(Settings(data_dir=tmp_path / "data"), tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "ENCLAVE_API_KEY"}
    done = subprocess.run([sys.executable, "-m", "enclave.cli", "mcp", "--config", config], capture_output=True,
                          text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and done.stdout == ""
    assert "ENCLAVE_API_KEY" in done.stderr and "server.mcp.groups" in done.stderr


def test_an_app_started_twice_serves_mcp_both_times(halvard_settings, halvard_pipeline):
    """The SDK's session manager runs once per instance: each start of the app builds a new one."""
    from fastapi.testclient import TestClient

    app = create_app(server_settings(halvard_settings), pipeline=halvard_pipeline)
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    headers = {"Accept": "application/json, text/event-stream", **bearer("ola")}
    for _ in range(2):
        with TestClient(app) as client:
            assert client.post("/mcp", json=initialize, headers=headers).status_code == 200
    assert TestClient(app).post("/mcp", json=initialize, headers=headers).status_code == 503  # not started


def test_building_the_mcp_server_leaves_the_host_processs_logging_alone():
    """The SDK's MCPServer() calls logging.basicConfig(INFO, a rich handler): an app must not change its host's logging."""
    import logging

    root = logging.getLogger()
    saved = list(root.handlers), root.level
    root.handlers[:] = []
    root.setLevel(logging.WARNING)
    try:
        create_app(server_settings(Settings()))
        assert root.handlers == [] and root.level == logging.WARNING
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
