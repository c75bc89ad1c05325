"""What every generator takes and returns, and the errors that move the chain on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
    """A generator's answer. Tokens are the generator's own counts (0 where it has none); ``cost`` in
    US dollars (see llms.cost_table); ``seconds`` the answering generator's time; ``attempts`` the
    route taken, every generator tried in order."""

    text: str
    generator: str
    model: str
    locality: Literal["local", "external"]
    tokens_in: int = 0
    tokens_out: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    cost: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True)
class Usage:
    """Token counts of one generation, as the generator's server reports them; a stream's last item."""

    tokens_in: int = 0
    tokens_out: int = 0


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


class StreamingGenerator(Protocol):
    """A generator that can also stream: text pieces as they arrive, then one :class:`Usage`."""

    name: str
    model: str
    locality: Literal["local", "external"]

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]: ...


def collect(generator: StreamingGenerator, request: GenerationRequest) -> Generation:
    """Run ``generator.stream(request)`` to its end and return the whole answer. Raises
    GeneratorUnavailable as the stream does, or for an empty answer."""
    pieces, usage = [], Usage()
    for item in generator.stream(request):
        if isinstance(item, Usage):
            usage = item
        else:
            pieces.append(item)
    text = "".join(pieces).strip()
    if not text:
        raise GeneratorUnavailable(generator.name, "the model returned an empty answer")
    return Generation(text=text, generator=generator.name, model=generator.model, locality=generator.locality,
                      tokens_in=usage.tokens_in, tokens_out=usage.tokens_out)
