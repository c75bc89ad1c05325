"""What generators share: reading a stream to its whole answer, refusing an empty one, and wrapping another.

The contract itself (``Generator``, ``GenerationRequest``, ``Usage``, ``Generation``,
``GeneratorUnavailable``) lives in [enclave.contracts][enclave.contracts], with the other data that
crosses stages.
"""

from __future__ import annotations

from collections.abc import Iterator

from enclave.contracts import Generation, GenerationRequest, Generator, GeneratorUnavailable, Usage
from enclave.llms.abstention import is_abstention

EMPTY_ANSWER = "the model returned an empty answer"


def with_text(name: str, items: Iterator[str | Usage]) -> Iterator[str | Usage]:
    """``items`` (a generator's stream) passed on as they come; raises GeneratorUnavailable (``name``:
    "the model returned an empty answer") at the end of a stream that held no text but whitespace."""
    said = False
    for item in items:
        if isinstance(item, str) and item.strip():
            said = True
        yield item
    if not said:
        raise GeneratorUnavailable(name, EMPTY_ANSWER)


class WrappedGenerator:
    """Base of a generator that wraps another ([BreakerGuard][enclave.llms.BreakerGuard],
    [EgressGuard][enclave.llms.EgressGuard]): it answers to the wrapped generator's name, model and
    locality, is as reachable as it is, and ``run`` reads its own ``stream`` (which a subclass gives) to
    the end.

    Usage::

        class Logged(WrappedGenerator):
            def stream(self, request):
                log.info("asking %s", self.name)
                yield from self.generator.stream(request)
    """

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.name = generator.name
        self.model = generator.model
        self.locality = generator.locality

    def stream(self, request: GenerationRequest) -> Iterator[str | Usage]:
        raise NotImplementedError

    def reachable(self, timeout: float = 2.0) -> str | None:
        """The wrapped generator's answer: None, or why it is not reachable."""
        return self.generator.reachable(timeout)

    def run(self, request: GenerationRequest) -> Generation:
        """The whole answer; raises as ``stream`` does."""
        return collect(self, request)


def collect(generator: Generator, request: GenerationRequest) -> Generation:
    """``generator.stream(request)`` read to its end: the whole answer as a
    [Generation][enclave.contracts.Generation]. Raises GeneratorUnavailable as the stream does, or for
    an empty answer."""
    pieces, usage = [], Usage()
    for item in with_text(generator.name, generator.stream(request)):
        if isinstance(item, Usage):
            usage = item
        else:
            pieces.append(item)
    text = "".join(pieces).strip()
    return Generation(text=text, generator=generator.name, model=generator.model, locality=generator.locality,
                      tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, abstained=is_abstention(text))
