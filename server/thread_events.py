"""A blocking event iterator (the answer pipeline's stream) run in a worker thread and read from async code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")
_END = object()


async def events_in_thread(make: Callable[[], Iterator[T]], executor: Executor | None = None) -> AsyncIterator[T]:
    """Yield the events of ``make()`` as a worker thread of ``executor`` produces them.

    Usage::

        async for event in events_in_thread(lambda: pipeline.stream(question, groups), executor):
            ...

    An exception the iterator raises is raised here. When the reader stops early (the client went
    away; ``aclose()``), the thread stops at its next event and closes the iterator, so a generator
    stops at its next token rather than finishing an answer nobody reads.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
    stop = threading.Event()

    def put(item: tuple[Any, BaseException | None]) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone: nobody is reading
            stop.set()

    def produce() -> None:
        iterator = None
        try:
            iterator = make()
            for event in iterator:
                if stop.is_set():
                    break
                put((event, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
            put((None, exc))
            return
        finally:
            close = getattr(iterator, "close", None) if iterator is not None else None
            if close is not None:
                close()
        put((_END, None))

    loop.run_in_executor(executor, produce)
    try:
        while True:
            event, error = await queue.get()
            if error is not None:
                raise error
            if event is _END:
                return
            yield event
    finally:
        stop.set()
