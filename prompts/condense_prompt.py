"""Follow-up questions made standalone: the prompt a local model condenses with, and the keyword
fallback for when no model is reachable."""

from __future__ import annotations

import re
from collections.abc import Sequence

from enclave.prompts.function_words import STOPWORDS
from enclave.prompts.template import PromptTemplate

_WORD = re.compile(r"[^\W\d_][\w'-]*|\d[\w.-]*", re.UNICODE)
_SOURCES = re.compile(r"\n+Sources:\n.*\Z", re.DOTALL)


def condense_messages(question: str, history: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Chat messages asking a model to rewrite ``question`` as a standalone question, given ``history``
    (earlier turns, ``{"role", "content"}``, oldest first). The reply is the question, on one line."""
    turns = [{"role": m["role"], "content": without_sources(m.get("content", ""))} for m in history]
    return [{"role": "user", "content": PromptTemplate("condense_user.j2").render(question=question, history=turns)}]


def without_sources(text: str) -> str:
    """An earlier answer without the "Sources:" list the OpenAI-compatible endpoint appends to it."""
    return _SOURCES.sub("", text).strip()


def keyword_question(question: str, history: Sequence[dict[str, str]], keywords: int = 8) -> str:
    """``question`` followed by up to ``keywords`` content words of the earlier user turns in ``history``
    (most recent first, no stopwords, none already in the question): the standalone question when no
    model can condense. Returns ``question`` unchanged when the history adds nothing."""
    seen = {w.lower() for w in _WORD.findall(question)}
    extra: list[str] = []
    for message in reversed(history):
        if message.get("role") != "user":
            continue
        for word in _WORD.findall(message.get("content", "")):
            lowered = word.lower()
            if lowered in seen or lowered in STOPWORDS or len(lowered) < 3:
                continue
            seen.add(lowered)
            extra.append(word)
            if len(extra) == keywords:
                return f"{question} ({' '.join(extra)})"
    return f"{question} ({' '.join(extra)})" if extra else question


def condensed_line(reply: str, limit: int = 1000) -> str | None:
    """The standalone question in a model's reply: its first non-empty line without quotes or a
    "Question:" prefix; None when the reply holds none (or only a line longer than ``limit`` characters)."""
    for line in reply.splitlines():
        line = re.sub(r"^\s*(standalone question|rewritten question|question)\s*:\s*", "", line, flags=re.IGNORECASE)
        line = line.strip().strip('"“”\'').strip()
        if line:
            return line if len(line) <= limit else None
    return None
