"""Events of a blocking iterator read from async code: in order, and an error from making it is raised."""

from __future__ import annotations

import asyncio

import pytest

from enclave.server.thread_events import events_in_thread


async def _read(make):
    return [event async for event in events_in_thread(make)]


def test_events_arrive_in_order():
    assert asyncio.run(_read(lambda: iter([1, 2, 3]))) == [1, 2, 3]


def test_an_error_making_or_iterating_is_raised_not_a_hang():
    def broken():
        raise ValueError("cannot start")

    def failing():
        yield 1
        raise RuntimeError("mid-way")

    with pytest.raises(ValueError, match="cannot start"):
        asyncio.run(asyncio.wait_for(_read(broken), timeout=10))
    with pytest.raises(RuntimeError, match="mid-way"):
        asyncio.run(asyncio.wait_for(_read(failing), timeout=10))
