"""The answer prompt: numbered context passages, a question, and the instruction to cite them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from prompts.template import PromptTemplate


class Passage(Protocol):
    """What a context passage must have (``indexes.ScoredChunk`` has it)."""

    title: str
    section: str
    text: str


def answer_messages(
    question: str, passages: Sequence[Passage], history: Sequence[dict[str, str]] = ()
) -> list[dict[str, str]]:
    """Chat messages asking for a cited answer to ``question`` from ``passages``, numbered from 1 in order.

    Returns ``[{"role": "system", ...}, *history, {"role": "user", ...}]``; passage ``i`` is cited as
    ``[i]``; ``history`` is earlier turns of the conversation (role, content), oldest first.
    """
    return [
        {"role": "system", "content": PromptTemplate("answer_system.md").render()},
        *({"role": m["role"], "content": m["content"]} for m in history),
        {"role": "user", "content": PromptTemplate("answer_user.j2").render(question=question, passages=passages)},
    ]
