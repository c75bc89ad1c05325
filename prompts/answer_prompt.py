"""The answer prompt: numbered context passages, a question, and the instruction to cite them."""

from __future__ import annotations

from collections.abc import Sequence

from enclave.contracts import Passage
from enclave.prompts.template import PromptTemplate


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
