"""Limits on what one question may carry (``server.limits``): 422 with a message naming the limit."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import HTTPException

from enclave.settings import LimitSettings


def check_conversation(limits: LimitSettings, question: str, history: Sequence[dict[str, str]],
                       messages: int | None = None) -> None:
    """Raise HTTPException 422 when ``question`` is blank or longer than ``max_question_chars``, or the
    request holds more than ``max_messages`` messages (``messages``, default the history and the
    question), or ``history`` more than ``max_history_chars`` characters in all."""
    if not question.strip():
        raise HTTPException(422, "the question is blank")
    if len(question) > limits.max_question_chars:
        raise HTTPException(422, f"the question has {len(question)} characters; the limit is "
                                 f"{limits.max_question_chars} (server.limits.max_question_chars)")
    count = len(history) + 1 if messages is None else messages
    if count > limits.max_messages:
        raise HTTPException(422, f"{count} messages; the limit is {limits.max_messages} (server.limits.max_messages)")
    size = sum(len(m["content"]) for m in history)
    if size > limits.max_history_chars:
        raise HTTPException(422, f"the history has {size} characters; the limit is {limits.max_history_chars} "
                                 "(server.limits.max_history_chars)")


def check_max_tokens(limits: LimitSettings, max_tokens: int | None) -> None:
    """Raise HTTPException 422 when a request asks for more than ``max_tokens`` output tokens."""
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise HTTPException(422, f"max_tokens {max_tokens} is over the limit of {limits.max_tokens} "
                                 "(server.limits.max_tokens)")
