// Enclave's chat page. Plain JavaScript, no build step, nothing loaded from elsewhere.
//
// It asks POST /v1/ask with {question, stream: true, history} and reads the server-sent events with
// fetch() + ReadableStream (EventSource cannot POST):
//   token   {"text"}               appended to the answer being shown
//   restart {"generator","reason"} the generator failed mid-answer: the text so far is dropped
//   answer  {answer, citations, generator, model, route, ..., question}  the final answer: replaces the text,
//           each [n] becomes a button that shows the cited passage, the sources are listed under it
//   error   {"detail"}             shown in place of the answer
// Errors before the stream starts are JSON {"detail"} with a 4xx/5xx status, shown the same way. A server
// that answers with plain JSON (no stream) is shown as one final answer.
// Every string from the server goes into the page as text (textContent), never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "enclave.apiKey";
  // **bold**, `code`, a citation marker [n], or *emphasis*
  const INLINE = /\*\*([^*\n]+?)\*\*|`([^`\n]+)`|\[(\d{1,3})\]|(?<![*\w])\*([^*\s](?:[^*\n]*[^*\s])?)\*(?![*\w])/g;
  // a line that starts a Markdown block (list item, heading, table row, quote): never joined to the one before
  const BLOCK_START = /^\s*(?:[-*+]\s|\d{1,3}[.)]\s|#{1,6}\s|\||>)/;

  const NO_CITATIONS = new Map();
  const $ = (id) => document.getElementById(id);
  const form = $("ask-form");
  const questionBox = $("question");
  const sendButton = $("send");
  const keyInput = $("api-key");
  const conversationEl = $("conversation");
  const emptyNote = $("empty");
  const passage = {
    panel: $("passage"), number: $("passage-number"), title: $("passage-title"), section: $("passage-section"),
    uri: $("passage-uri"), text: $("passage-text"), score: $("passage-score"), close: $("passage-close"),
  };

  /** Earlier turns, oldest first, as the API takes them: [{role: "user"|"assistant", content}]. */
  let history = [];
  let busy = false;

  // -- the API key: kept in this browser's localStorage, sent as a bearer token when not empty ------------
  function storedKey() {
    try { return localStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
  }
  function storeKey(value) {
    try {
      if (value) localStorage.setItem(KEY_STORAGE, value); else localStorage.removeItem(KEY_STORAGE);
    } catch { /* storage disabled: the key lives as long as the page */ }
  }
  keyInput.value = storedKey();
  keyInput.addEventListener("input", () => storeKey(keyInput.value.trim()));

  // -- small DOM builders ---------------------------------------------------------------------------------
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function scrollToEnd() {
    conversationEl.scrollTop = conversationEl.scrollHeight;
  }

  /** One question and its answer in the conversation; returns the parts the stream writes into. */
  function addTurn(question) {
    emptyNote.hidden = true;
    const turn = el("article", "turn");
    turn.dataset.state = "waiting";
    const asked = el("div", "message user");
    asked.append(el("p", "text", question));
    const answer = el("div", "message assistant");
    const notes = el("div", "notes");
    const text = el("p", "text answer-text");
    const status = el("p", "status", "Searching the documents\u2026");
    const sources = el("div", "sources");
    sources.hidden = true;
    const meta = el("p", "meta");
    answer.append(notes, text, status, sources, meta);
    turn.append(asked, answer);
    conversationEl.append(turn);
    scrollToEnd();
    return { turn, answer, notes, text, status, sources, meta, streamed: "" };
  }

  function setState(parts, state) {
    parts.turn.dataset.state = state;
    parts.answer.classList.toggle("streaming", state === "streaming");
  }

  function showError(parts, message) {
    setState(parts, "error");
    parts.status.hidden = true;
    parts.text.replaceChildren();
    const box = el("p", "error");
    box.setAttribute("role", "alert");
    box.textContent = message;
    parts.text.append(box);
    scrollToEnd();
  }

  /** The answer text as nodes. A little of the Markdown models write is rendered (bullets, headings,
   *  **bold**, *emphasis*, `code`, wrapped lines joined); each [n] that has a citation in ``byNumber`` becomes a button showing that passage. */
  function answerNodes(text, byNumber) {
    const nodes = [];
    unwrapped(text).split("\n").forEach((line, index) => {
      if (index) nodes.push(document.createTextNode("\n"));
      const bullet = /^(\s*)[-*+]\s+/.exec(line);
      if (bullet) {
        nodes.push(document.createTextNode(bullet[1] + "\u2022 "));
        line = line.slice(bullet[0].length);
      }
      const heading = /^#{1,6}\s+/.exec(line);
      if (heading) {
        const strong = el("strong");
        strong.append(...inlineNodes(line.slice(heading[0].length), byNumber));
        nodes.push(strong);
      } else {
        nodes.push(...inlineNodes(line, byNumber));
      }
    });
    return nodes;
  }

  /** ``text`` with hard-wrapped paragraph lines joined by a space, as Markdown reads them. */
  function unwrapped(text) {
    const lines = [];
    for (const line of text.split("\n")) {
      const previous = lines.length ? lines[lines.length - 1] : "";
      if (previous.trim() && line.trim() && !BLOCK_START.test(line) && !/^\s*(?:#|\|)/.test(previous)) {
        lines[lines.length - 1] = previous.trimEnd() + " " + line.trim();
      } else {
        lines.push(line);
      }
    }
    return lines.join("\n");
  }

  function inlineNodes(text, byNumber) {
    const nodes = [];
    let last = 0;
    for (const match of text.matchAll(INLINE)) {
      let node = null;
      if (match[1] !== undefined) {
        node = el("strong");
        node.append(...inlineNodes(match[1], byNumber));
      } else if (match[2] !== undefined) {
        node = el("code", null, match[2]);
      } else if (match[3] !== undefined) {
        const citation = byNumber.get(Number(match[3]));
        if (citation) node = citeButton(citation, `[${citation.number}]`);
      } else {
        node = el("em");
        node.append(...inlineNodes(match[4], byNumber));
      }
      if (!node) continue;
      if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
      nodes.push(node);
      last = match.index + match[0].length;
    }
    if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
    return nodes;
  }

  function citeButton(citation, label) {
    const button = el("button", "cite", label);
    button.type = "button";
    button.dataset.number = String(citation.number);
    button.title = citation.title + (citation.section ? " \u2014 " + citation.section : "");
    button.setAttribute("aria-label", `Show passage ${citation.number}: ${citation.title}`);
    button.addEventListener("click", () => showPassage(citation, button));
    return button;
  }

  function seconds(value) {
    return typeof value === "number" ? `${value.toFixed(1)} s` : "";
  }

  function renderAnswer(parts, result, asked) {
    const citations = Array.isArray(result.citations) ? result.citations : [];
    const byNumber = new Map(citations.map((c) => [Number(c.number), c]));
    parts.text.replaceChildren(...answerNodes(String(result.answer ?? ""), byNumber));
    parts.status.hidden = true;

    parts.sources.replaceChildren();
    if (citations.length) {
      parts.sources.append(el("h3", null, "Sources"));
      const list = el("ol");
      for (const citation of citations) {
        const item = el("li");
        item.append(citeButton(citation, `[${citation.number}]`), " ", el("span", "source-title", citation.title));
        if (citation.section) item.append(el("span", "source-section", " \u2014 " + citation.section));
        list.append(item);
      }
      parts.sources.append(list);
      parts.sources.hidden = false;
    }

    const route = Array.isArray(result.route) ? result.route : [];
    const failed = route.filter((attempt) => attempt.error);
    const bits = [`Answered by ${result.generator}` + (result.model && result.model !== result.generator ? ` (${result.model})` : "")];
    if (failed.length) bits.push("after " + failed.map((a) => `${a.generator} failed: ${a.error}`).join("; "));
    if (typeof result.seconds === "number") bits.push(seconds(result.seconds));
    if (typeof result.cost === "number" && result.cost > 0) bits.push(`$${result.cost.toFixed(5)}`);
    parts.meta.replaceChildren(el("span", "generator", bits.join(" \u00b7 ")));
    parts.meta.dataset.generator = String(result.generator ?? "");
    if (result.question && result.question.trim() !== asked.trim()) {
      parts.meta.append(el("span", "searched", `Searched for: ${result.question}`));
    }
    setState(parts, "done");
    scrollToEnd();
  }

  // -- the cited passage panel ----------------------------------------------------------------------------
  function showPassage(citation, button) {
    for (const active of document.querySelectorAll(".cite.active")) active.classList.remove("active");
    for (const same of document.querySelectorAll(`.cite[data-number="${citation.number}"]`)) {
      if (same.closest(".turn") === button.closest(".turn")) same.classList.add("active");
    }
    passage.number.textContent = `[${citation.number}]`;
    passage.title.textContent = citation.title || citation.doc_id || "";
    passage.section.textContent = citation.section || "";
    passage.section.hidden = !citation.section;
    passage.uri.replaceChildren();
    if (citation.uri && /^https?:\/\//i.test(citation.uri)) {
      const link = el("a", null, citation.uri);
      link.href = citation.uri;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      passage.uri.append(link);
    } else if (citation.uri) {
      passage.uri.textContent = citation.uri;
    }
    passage.text.replaceChildren(...answerNodes(String(citation.text || ""), NO_CITATIONS));
    passage.score.textContent = typeof citation.score === "number"
      ? `chunk ${citation.chunk} \u00b7 retrieval score ${citation.score.toFixed(3)}` : "";
    passage.panel.hidden = false;
  }

  function hidePassage() {
    passage.panel.hidden = true;
    for (const active of document.querySelectorAll(".cite.active")) active.classList.remove("active");
  }
  passage.close.addEventListener("click", hidePassage);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !passage.panel.hidden) hidePassage();
  });

  // -- the request and its event stream -------------------------------------------------------------------
  /** The message of an error response: its JSON "detail" (a string, or FastAPI's list of problems). */
  async function errorMessage(response) {
    let detail = "";
    try {
      const body = await response.json();
      detail = body && body.detail;
      if (Array.isArray(detail)) {
        detail = detail.map((d) => {
          const where = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body").join(".") : "";
          return (where ? where + ": " : "") + (d.msg || JSON.stringify(d));
        }).join("; ");
      } else if (detail && typeof detail !== "string") {
        detail = JSON.stringify(detail);
      }
    } catch { /* not JSON */ }
    let message = `Error ${response.status}: ${detail || response.statusText || "the request failed"}`;
    const retry = response.headers.get("Retry-After");
    if (response.status === 429 && retry) message += ` (try again in ${retry} s)`;
    return message;
  }

  /** Server-sent events from a fetch() body: yields {event, data} with data the joined data lines. */
  async function* serverSentEvents(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let event = "";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      // a chunk may end between the \r and \n of one line break: keep a trailing \r for the next chunk
      let held = "";
      if (!done && buffer.endsWith("\r")) { held = "\r"; buffer = buffer.slice(0, -1); }
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = (done ? "" : lines.pop()) + held;
      for (const line of lines) {
        if (line === "") {
          if (data.length) yield { event: event || "message", data: data.join("\n") };
          event = "";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
        }
      }
      if (done) return; // an event without its closing blank line is incomplete: dropped, as EventSource does
    }
  }

  function parseData(message) {
    try { return JSON.parse(message.data); } catch { return {}; }
  }

  async function ask(question) {
    const parts = addTurn(question);
    const headers = { "Content-Type": "application/json", Accept: "text/event-stream, application/json" };
    const key = keyInput.value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    const body = JSON.stringify({ question, stream: true, history });

    let response;
    try {
      response = await fetch("/v1/ask", { method: "POST", headers, body });
    } catch (error) {
      showError(parts, `The server could not be reached (${error.message}).`);
      return;
    }
    if (!response.ok) {
      showError(parts, await errorMessage(response));
      return;
    }

    let final = null;
    try {
      const type = response.headers.get("Content-Type") || "";
      if (!type.startsWith("text/event-stream")) {
        final = await response.json(); // a server that does not stream: the whole answer at once
        renderAnswer(parts, final, question);
      } else {
        for await (const message of serverSentEvents(response.body)) {
          const payload = parseData(message);
          if (message.event === "token") {
            if (parts.turn.dataset.state !== "streaming") {
              setState(parts, "streaming");
              parts.status.hidden = true;
            }
            parts.streamed += String(payload.text ?? "");
            parts.text.replaceChildren(...answerNodes(parts.streamed, NO_CITATIONS));
            scrollToEnd();
          } else if (message.event === "restart") {
            parts.streamed = "";
            parts.text.textContent = "";
            const reason = payload.reason ? ` (${payload.reason})` : "";
            parts.notes.append(el("p", "note", `${payload.generator || "The generator"} stopped${reason}; the next one answers.`));
            parts.status.textContent = "Answering again\u2026";
            parts.status.hidden = false;
          } else if (message.event === "answer") {
            final = payload;
            renderAnswer(parts, final, question);
          } else if (message.event === "error") {
            showError(parts, `Error: ${payload.detail || message.data}`);
            return;
          }
        }
      }
    } catch (error) {
      showError(parts, `The answer was cut off (${error.message}).`);
      return;
    }
    if (!final) {
      showError(parts, "The answer stream ended before the answer was complete.");
      return;
    }
    history.push({ role: "user", content: question }, { role: "assistant", content: String(final.answer ?? "") });
  }

  function setBusy(value) {
    busy = value;
    sendButton.disabled = value;
    sendButton.textContent = value ? "Answering\u2026" : "Send";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = questionBox.value.trim();
    if (!question || busy) return;
    questionBox.value = "";
    setBusy(true);
    try {
      await ask(question);
    } finally {
      setBusy(false);
      questionBox.focus();
    }
  });

  questionBox.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  $("new-chat").addEventListener("click", () => {
    if (busy) return;
    history = [];
    for (const turn of conversationEl.querySelectorAll(".turn")) turn.remove();
    emptyNote.hidden = false;
    hidePassage();
    questionBox.focus();
  });

  questionBox.focus();
})();
