"""The web chat page (``GET /``, server/static/) driven in a real headless Chromium.

Debian's ``chromium`` (``make browser``, a dependency of ``make test``) is driven through the ``playwright``
package's own driver (``playwright install`` is never run: no browser is downloaded). The app runs in a
real uvicorn on 127.0.0.1 over the session's halvard index, with the stand-in Ollama streaming its answer
word by word, so the page shows a streamed, cited answer exactly as a user sees it.

``ENCLAVE_CHAT_SCREENSHOT=docs/chat-page.png`` writes the test's screenshot there (docs/chat-page.png is one).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import serving

CHROMIUM = Path(os.environ.get("ENCLAVE_CHROMIUM", "/usr/bin/chromium"))
QUESTION = "What is the minimum length for a password?"
API_KEY = "enc-chat-page-test-key"
# what this closed network needs: no sandbox (root in a container), no GPU, nothing that phones home
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = pytest.mark.timeout(120)


class AuthorizationLog:
    """ASGI middleware recording the ``Authorization`` header of every ``POST /v1/ask`` that reaches the app."""

    def __init__(self, app, seen: list[str | None]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/ask":
            headers = dict(scope["headers"])
            value = headers.get(b"authorization")
            self.seen.append(None if value is None else value.decode("latin-1"))
        await self.app(scope, receive, send)


@pytest.fixture()
def chat_server(halvard_settings, halvard_pipeline) -> Iterator[tuple[str, list[str | None]]]:
    """The app with the stand-in Ollama streaming a word every 50 ms, one API key (:data:`API_KEY`, groups
    everyone) and no anonymous access; yields its URL and the Authorization headers its /v1/ask received."""
    from server_auth import server_settings
    from standins.ollama_server import OllamaStandIn

    from enclave.flows.answer_pipeline import AnswerPipeline
    from enclave.llms import ExtractiveGenerator, FallbackRouter, OllamaGenerator
    from enclave.server.app import create_app

    settings = server_settings(halvard_settings, keys={"page-tester": (API_KEY, ["everyone"])}, anonymous=False)
    seen: list[str | None] = []
    with OllamaStandIn(models=["llama3.1:8b"], token_seconds=0.05) as ollama_server:
        chain = FallbackRouter([OllamaGenerator("llama3.1:8b", host=ollama_server.url, timeout=10), ExtractiveGenerator()])
        app = create_app(settings, pipeline=AnswerPipeline(halvard_pipeline.retriever, chain))
        app.add_middleware(AuthorizationLog, seen=seen)
        with serving(app) as url:
            yield url, seen


@pytest.fixture()
def page(tmp_path):
    """A page of a fresh headless Chromium (its own temporary profile), collecting the page's errors and
    every URL it requested on ``page.problems`` / ``page.requested``."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `make browser` (part of `make test`) installs Debian's chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package (the test extra) is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 760})
            tab = context.new_page()
            tab.problems, tab.requested = [], []
            tab.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
            tab.on("console", lambda message: message.type == "error" and tab.problems.append(f"console: {message.text}"))
            tab.on("request", lambda request: tab.requested.append(request.url))
            tab.set_default_timeout(15_000)
            yield tab
        finally:
            browser.close()


# Records, on every change under #conversation, the last answer's text and state: the stream's progress.
WATCH_ANSWER = """() => {
  window.answerSnapshots = [];
  const conversation = document.getElementById("conversation");
  new MutationObserver(() => {
    const turn = conversation.querySelector(".turn:last-of-type");
    const text = turn && turn.querySelector(".answer-text");
    if (text) window.answerSnapshots.push({state: turn.dataset.state, text: text.textContent});
  }).observe(conversation, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def ask(page, question: str) -> None:
    page.fill("#question", question)
    page.click("#send")
    page.wait_for_function(
        "() => ['done', 'error'].includes(document.querySelector('.turn:last-of-type')?.dataset.state)")


def test_a_question_gets_a_streamed_answer_whose_citation_shows_the_passage(chat_server, page, tmp_path):
    url, authorizations = chat_server
    page.goto(url)
    assert page.title() == "Enclave"
    page.fill("#api-key", API_KEY)
    page.evaluate(WATCH_ANSWER)
    ask(page, QUESTION)

    answer = page.locator(".turn:last-of-type .answer-text")
    final = answer.text_content()
    assert page.locator(".turn:last-of-type").get_attribute("data-state") == "done", final
    assert "14 characters" in final and final.endswith("[1]"), final
    assert authorizations == [f"Bearer {API_KEY}"]

    # the answer grew on screen, token by token, before it was complete (while it streams, Markdown not yet
    # closed shows as typed: "**14", a lone "-" before its bullet; words are compared without them)
    def words(text: str) -> str:
        return " ".join(word for word in text.replace("*", "").replace("\u2022", " ").split() if word != "-")

    snapshots = page.evaluate("window.answerSnapshots")
    partial = {words(s["text"]) for s in snapshots if s["state"] == "streaming"} - {"", words(final)}
    assert len(partial) >= 3, snapshots
    assert all(words(final).startswith(text) for text in partial), (partial, final)

    # the generator that answered, and the source listed under the answer
    assert "ollama" in page.locator(".turn:last-of-type .meta").text_content()
    sources = page.locator(".turn:last-of-type .sources li")
    assert sources.count() == 1

    # [1] in the answer is a button that opens the cited passage
    citation = answer.locator(".cite[data-number='1']")
    assert citation.text_content() == "[1]"
    assert page.locator("#passage").is_hidden()
    citation.click()
    passage = page.locator("#passage-text")
    passage.wait_for(state="visible")
    assert "14 characters" in passage.text_content()
    assert page.locator("#passage-title").text_content().strip()
    assert page.locator("#passage-title").text_content() in sources.first.text_content()

    shot = Path(os.environ.get("ENCLAVE_CHAT_SCREENSHOT") or tmp_path / "chat-page.png")
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    # a wrong key: the server's 401 detail is shown in the page; the request carried the conversation so far
    page.fill("#api-key", "enc-wrong-key")
    with page.expect_request("**/v1/ask") as request_info:
        ask(page, "And how often must it change?")
    error = page.locator(".turn:last-of-type .error")
    assert error.text_content().startswith("Error 401:") and len(error.text_content()) > len("Error 401: "), error.text_content()
    assert authorizations[-1] == "Bearer enc-wrong-key"
    history = request_info.value.post_data_json["history"]
    assert [turn["role"] for turn in history] == ["user", "assistant"]
    assert history[0]["content"] == QUESTION and "14 characters" in history[1]["content"]

    # the key stays in this browser across a reload; nothing was fetched from anywhere but the server
    page.reload()
    assert page.input_value("#api-key") == "enc-wrong-key"
    assert page.problems == [p for p in page.problems if "401" in p], page.problems  # only the 401 itself
    assert all(requested.startswith(url + "/") or requested == url for requested in page.requested), page.requested


def test_the_page_and_its_files_are_served_without_the_api_schema(chat_server):
    import httpx

    url, _ = chat_server
    page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for name, kind in (("chat.js", "javascript"), ("chat.css", "text/css")):
        response = httpx.get(f"{url}/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"], name
    assert httpx.get(url + "/static/..%2Fapp.py").status_code == 404
    assert httpx.get(url + "/static/nothing.js").status_code == 404
    paths = httpx.get(url + "/openapi.json").json()["paths"]
    assert "/" not in paths and not any(path.startswith("/static") for path in paths)

