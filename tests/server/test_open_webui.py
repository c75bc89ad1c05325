"""Open WebUI against Enclave's OpenAI-compatible API, for real, driven in a headless Chromium.

Open WebUI (PyPI ``open-webui``, the version ``make openwebui`` pins, in its own venv ``.venv-openwebui``; or
``ENCLAVE_OPENWEBUI`` naming its ``open-webui`` executable) runs as a process on 127.0.0.1 with a temporary
``DATA_DIR``, offline, pointed at the app (the one ``enclave serve`` runs, in a real uvicorn on 127.0.0.1) over
the session's halvard index with API keys required and the stand-in Ollama streaming its answer. Debian's
Chromium drives its web page as a user would (the ``playwright`` package's own driver, as
tests/server/test_chat_page.py does): pick the ``enclave`` model, ask, read the streamed answer and open its
citation. Then the connection's key is changed to a wrong one, and the next question shows Enclave's 401.

Skips without Open WebUI or Chromium. Start-up of Open WebUI is reported as the ``open_webui_startup_s`` user
property (``--junitxml``) and printed (``-s``). ``ENCLAVE_OPENWEBUI_SCREENSHOT=docs/open-webui.png`` writes the
screenshot of the opened citation there (docs/open-webui.png is one).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from live_server import serving
from prefect_server import free_port

REPO = Path(__file__).resolve().parents[2]
OPENWEBUI = Path(os.environ.get("ENCLAVE_OPENWEBUI") or REPO / ".venv-openwebui" / "bin" / "open-webui")
CHROMIUM = Path(os.environ.get("ENCLAVE_CHROMIUM", "/usr/bin/chromium"))
# what this closed network needs: no sandbox (root in a container), no GPU, nothing that phones home
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
API_KEY = "enc-open-webui-test-key"
QUESTION = "How many days of paid leave do employees earn each month?"
FOLLOW_UP = "How many unused days may be carried over?"
STARTUP_TIMEOUT = 300  # seconds; measured 11-36 s on 2 busy cores, most of it its database migrations

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not OPENWEBUI.exists(), reason=f"no Open WebUI at {OPENWEBUI}: `make openwebui` installs it "
                                                      "(or set ENCLAVE_OPENWEBUI to its open-webui executable)"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: `make browser` installs Debian's chromium"),
]


class RequestLog:
    """ASGI middleware recording every ``/v1/*`` request that reaches the app as ``{"method", "path",
    "authorization", "body"}`` (``body``: the parsed JSON, or None), and its response status as ``"status"``."""

    def __init__(self, app, seen: list[dict]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        messages, body = [], b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        entry = {"method": scope["method"], "path": scope["path"],
                 "authorization": dict(scope["headers"]).get(b"authorization", b"").decode("latin-1"),
                 "body": json.loads(body) if body else None}
        self.seen.append(entry)

        async def replay():
            return messages.pop(0) if messages else await receive()

        async def recording_send(message):
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        await self.app(scope, replay, recording_send)


@pytest.fixture()
def enclave(halvard_settings, halvard_pipeline) -> Iterator[tuple[str, list[dict]]]:
    """The app with the stand-in Ollama streaming a word every 50 ms and one API key (:data:`API_KEY`, groups
    everyone), no anonymous access; yields its URL and the ``/v1`` requests it received (:class:`RequestLog`)."""
    from server_auth import server_settings
    from standins.ollama_server import OllamaStandIn

    from enclave.flows.answer_pipeline import AnswerPipeline
    from enclave.llms import ExtractiveGenerator, FallbackRouter, OllamaGenerator
    from enclave.server.app import create_app

    settings = server_settings(halvard_settings, keys={"open-webui": (API_KEY, ["everyone"])}, anonymous=False)
    seen: list[dict] = []
    with OllamaStandIn(models=["llama3.1:8b"], token_seconds=0.05) as ollama_server:
        chain = FallbackRouter([OllamaGenerator("llama3.1:8b", host=ollama_server.url, timeout=10), ExtractiveGenerator()])
        app = create_app(settings, pipeline=AnswerPipeline(halvard_pipeline.retriever, chain))
        app.add_middleware(RequestLog, seen=seen)
        with serving(app) as url:
            yield url, seen


def open_webui_environment(home: Path, port: int, base_url: str, api_key: str) -> dict[str, str]:
    """The environment Open WebUI needs to serve ``http://127.0.0.1:<port>`` against Enclave at ``base_url``
    (``http://host:port/v1``) with ``api_key``, offline, its state under ``home`` (``home/data``): no login,
    no Ollama, no embedding model of its own (Enclave retrieves), no update check or telemetry, and none of
    its background tasks (title, tags, follow-ups), which would reach Enclave as questions."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
        "DATA_DIR": str(home / "data"), "WEBUI_SECRET_KEY": "open-webui-test-secret", "WEBUI_AUTH": "false",
        "OPENAI_API_BASE_URL": base_url, "OPENAI_API_KEY": api_key, "ENABLE_OLLAMA_API": "false",
        "OFFLINE_MODE": "true", "HF_HUB_OFFLINE": "1", "RAG_EMBEDDING_MODEL": "", "BYPASS_EMBEDDING_AND_RETRIEVAL": "true",
        "ENABLE_TITLE_GENERATION": "false", "ENABLE_TAGS_GENERATION": "false", "ENABLE_FOLLOW_UP_GENERATION": "false",
        "ANONYMIZED_TELEMETRY": "false", "DO_NOT_TRACK": "true", "SCARF_NO_ANALYTICS": "true",
        "CORS_ALLOW_ORIGIN": f"http://127.0.0.1:{port}",
        # its models' "usage" capability: Open WebUI then asks for stream_options.include_usage
        "DEFAULT_MODEL_METADATA": json.dumps({"capabilities": {"usage": True}}),
    }


@pytest.fixture()
def open_webui(enclave, tmp_path, record_property) -> Iterator[str]:
    """``open-webui serve`` on a free port of 127.0.0.1 pointed at :func:`enclave` with :data:`API_KEY`;
    yields its URL once ``/health`` answers (fails after STARTUP_TIMEOUT s, with its log), and stops it."""
    enclave_url, _ = enclave
    port = free_port()
    home = tmp_path / "open-webui"
    home.mkdir()
    log = (tmp_path / "open-webui.log").open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [str(OPENWEBUI), "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=home, stdout=log,
        stderr=subprocess.STDOUT, env=open_webui_environment(home, port, f"{enclave_url}/v1", API_KEY),
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            assert process.poll() is None, f"open-webui exited {process.returncode}:\n{tail(tmp_path / 'open-webui.log')}"
            assert time.monotonic() - started < STARTUP_TIMEOUT, f"open-webui not up in {STARTUP_TIMEOUT} s:\n" + tail(
                tmp_path / "open-webui.log")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        startup = time.monotonic() - started
        record_property("open_webui_startup_s", round(startup, 1))
        print(f"\nOpen WebUI {OPENWEBUI} ready in {startup:.1f} s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the server and anything it started
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@pytest.fixture()
def page():
    """A page of a fresh headless Chromium, recording every URL it requested on ``page.requested``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            tab.requested = []
            tab.on("request", lambda request: tab.requested.append(request.url))
            tab.set_default_timeout(60_000)
            yield tab
        finally:
            browser.close()


def open_chat(page, url: str) -> None:
    """Open WebUI's page at a new chat, its "What's New" dialog (shown once to a new user) closed."""
    page.goto(url)
    page.wait_for_selector("#chat-input")
    whats_new = page.get_by_role("button", name="Okay, Let's Go!")
    try:
        whats_new.wait_for(timeout=10_000)
        whats_new.click()
    except Exception:  # playwright's TimeoutError: not shown
        pass


def ask(page, question: str) -> None:
    page.locator("#chat-input").click()
    page.keyboard.type(question)
    page.keyboard.press("Enter")


def test_open_webui_shows_enclaves_streamed_answer_with_its_citations(enclave, open_webui, page, tmp_path):
    _, seen = enclave
    open_chat(page, open_webui)

    # the model picker lists Enclave's routes (GET /v1/models with the key); pick the whole route
    page.locator("#model-selector-model-button").click()
    options = page.get_by_role("option")
    options.first.wait_for()
    assert [" ".join(options.nth(i).text_content().split()) for i in range(options.count())] == [
        "enclave", "enclave/ollama", "enclave/extractive"]
    page.get_by_role("option", name="Select enclave model").click()
    assert page.locator("#model-selector-model-button").get_attribute("aria-label") == "Selected model: enclave"

    ask(page, QUESTION)
    # each [n] becomes a chip naming its source once Enclave's source events arrive (the stream's end)
    chip = page.locator('button[aria-label^="View source:"]').first
    chip.wait_for()
    assert chip.get_attribute("aria-label").startswith("View source: employee-handbook.md — ")
    answer = page.locator("#response-content-container").last
    text = answer.text_content()
    assert "2.25 days of paid leave per month" in text and "Sources:" in text, text
    page.get_by_role("button", name="Toggle 1 source").wait_for()

    # the chip opens the cited passage
    chip.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Content", exact=True).wait_for()
    assert "employee-handbook.md" in dialog.text_content() and "2.25 days of paid leave" in dialog.text_content()
    page.wait_for_timeout(500)  # the dialog's fade-in
    page.screenshot(path=os.environ.get("ENCLAVE_OPENWEBUI_SCREENSHOT") or str(tmp_path / "open-webui.png"))
    page.keyboard.press("Escape")

    # what Open WebUI sent: the key, one streamed chat request (its background tasks are off), its built-in tools
    chats = [r for r in seen if r["path"] == "/v1/chat/completions"]
    assert {r["authorization"] for r in seen} == {f"Bearer {API_KEY}"}
    assert any(r["path"] == "/v1/models" and r["status"] == 200 for r in seen)
    assert len(chats) == 1 and chats[0]["status"] == 200, [r["body"] for r in chats]
    body = chats[0]["body"]
    assert body["model"] == "enclave" and body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": QUESTION}]
    assert body["stream_options"] == {"include_usage": True} and len(body["tools"]) > 10

    # a follow-up: the earlier answer comes back as an assistant message, its "Sources:" list included
    chips = page.locator('button[aria-label^="View source:"]').count()  # [1] in the text and in "Sources:"
    ask(page, FOLLOW_UP)
    page.wait_for_function("n => document.querySelectorAll('button[aria-label^=\"View source:\"]').length > n", arg=chips)
    follow_up = [r for r in seen if r["path"] == "/v1/chat/completions"][1]["body"]["messages"]
    assert [m["role"] for m in follow_up] == ["user", "assistant", "user"] and follow_up[-1]["content"] == FOLLOW_UP
    assert "Sources:" in follow_up[1]["content"]
    assert "employee-handbook.md" in page.locator("#response-content-container").last.text_content()

    # the connection's key changed to a wrong one (as an admin would in Admin Settings > Connections; a fixed
    # model list, so Open WebUI does not first list the models with it): Enclave's 401 shows in the chat
    token = page.evaluate("localStorage.token")
    update = page.request.post(f"{open_webui}/openai/config/update", headers={"Authorization": f"Bearer {token}"}, data={
        "ENABLE_OPENAI_API": True, "OPENAI_API_BASE_URLS": [f"{enclave[0]}/v1"], "OPENAI_API_KEYS": ["enc-wrong-key"],
        "OPENAI_API_CONFIGS": {"0": {"model_ids": ["enclave"]}}})
    assert update.status == 200, update.text()
    open_chat(page, open_webui)
    ask(page, "What is the minimum length for a password?")
    page.locator("#response-content-container").get_by_text("invalid API key").wait_for()  # and as a notification
    assert seen[-1]["authorization"] == "Bearer enc-wrong-key" and seen[-1]["status"] == 401

    # the browser fetched nothing from anywhere but Open WebUI (data: and blob: URLs are in-page)
    assert {urlsplit(u).netloc for u in page.requested if urlsplit(u).scheme in ("http", "https", "ws", "wss")} == {
        urlsplit(open_webui).netloc}
