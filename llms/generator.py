"""What every generator takes and returns, and the errors that move the chain on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from prompts.answer_prompt import Passage


@dataclass(frozen=True)
class GenerationRequest:
    """A question, its numbered context passages (passage i is cited as [i+1]) and the chat messages
    rendered from them by ``prompts.answer_messages``."""

    question: str
    passages: Sequence[Passage]
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class Attempt:
    """One generator tried on the route: ``error`` is empty when it answered."""

    generator: str
    error: str = ""
    seconds: float = 0.0


@dataclass
class Generation:
    """A generator's answer. Tokens are the generator's own counts (0 where it has none)."""

    text: str
    generator: str
    model: str
    locality: Literal["local", "external"]
    tokens_in: int = 0
    tokens_out: int = 0
    attempts: list[Attempt] = field(default_factory=list)


class GeneratorUnavailable(Exception):
    """This generator cannot answer now (down, timed out, model missing, 5xx/429): try the next one."""

    def __init__(self, generator: str, reason: str) -> None:
        super().__init__(f"{generator}: {reason}")
        self.generator = generator
        self.reason = reason


class Generator(Protocol):
    """A component that turns a :class:`GenerationRequest` into a :class:`Generation`."""

    name: str
    locality: Literal["local", "external"]

    def run(self, request: GenerationRequest) -> Generation:
        """Answer ``request``; raises GeneratorUnavailable when the next generator should be tried."""
