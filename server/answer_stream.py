"""An answer as it streams, for the routers: started in a worker thread, held until its first token."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator

from fastapi import Request

from enclave.flows.answer_pipeline import Answered, AnswerEvent
from enclave.llms.fallback_router import AllGeneratorsFailed, Token
from enclave.server.thread_events import events_in_thread


class AnswerStream:
    """The events of one [AnswerPipeline.stream][enclave.flows.answer_pipeline.AnswerPipeline.stream], read from async code.

    Usage::

        stream = await AnswerStream.start(request, lambda: pipeline.stream(question, groups))
        async for event in stream:          # Retrieved, Token..., Restart?, Token..., Answered
            ...

    ``start`` waits for the first token (or the whole answer), so that what fails before anything is
    said (no generator reachable: AllGeneratorsFailed; a bad argument) raises there, and the router can
    answer with a status code instead of a broken stream. The answer and the time to the first token
    go to the app's metrics (``app.state.metrics``, which ``create_app`` installs).
    """

    def __init__(self, request: Request, events: AsyncIterator[AnswerEvent], head: list[AnswerEvent]) -> None:
        self.request = request
        self._events = events
        self._head = head

    @classmethod
    async def start(cls, request: Request, make: Callable[[], Iterator[AnswerEvent]]) -> AnswerStream:
        started = time.perf_counter()
        events = events_in_thread(make, request.app.state.answer_executor)
        head: list[AnswerEvent] = []
        try:
            async for event in events:
                head.append(event)
                if isinstance(event, (Token, Answered)):
                    break
        except AllGeneratorsFailed as exc:
            record_no_answer(request, exc)
            raise
        record_first_token(request, time.perf_counter() - started)
        return cls(request, events, head)

    async def __aiter__(self) -> AsyncIterator[AnswerEvent]:
        try:
            for event in self._head:
                if isinstance(event, Answered):
                    record_answer(self.request, event.answer)
                yield event
            async for event in self._events:
                if isinstance(event, Answered):
                    record_answer(self.request, event.answer)
                yield event
        except AllGeneratorsFailed as exc:
            record_no_answer(self.request, exc)
            raise
        finally:
            await self._events.aclose()

    async def answer(self) -> Answered:
        """Read to the end: the Answered event."""
        last = None
        async for event in self:
            last = event
        assert isinstance(last, Answered), "an answer stream ends with Answered"
        return last


def record_answer(request: Request, answer) -> None:
    request.app.state.metrics.record_answer(answer)


def record_no_answer(request: Request, exc: AllGeneratorsFailed) -> None:
    request.app.state.metrics.record_no_answer(exc.attempts)


def record_first_token(request: Request, seconds: float) -> None:
    request.app.state.metrics.record_first_token(seconds)
