"""Readiness: whether the server can answer a question now (``GET /readyz``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from enclave.contracts import Generator
from enclave.indexes.chunk_store import ChunkStore

OK = "ok"


@dataclass(frozen=True)
class Readiness:
    """The verdict: ``index`` and each generator's entry are ``"ok"`` or ``"unreachable: <reason>"``;
    ``ready`` when the index is ok and at least one generator is."""

    index: str
    generators: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.index == OK and any(state == OK for state in self.generators.values())

    def as_json(self) -> dict[str, Any]:
        """``{"status": "ready" | "not ready", "index": ..., "generators": {name: ...}}``."""
        return {"status": "ready" if self.ready else "not ready", "index": self.index,
                "generators": dict(self.generators)}


class ReadinessProbe:
    """Checks the index and every generator on the route, caching each generator's result.

    Usage::

        probe = ReadinessProbe(timeout=2.0, cache_seconds=5.0)
        readiness = probe.check(pipeline.store, pipeline.router.generators)
        readiness.ready                     # True
        readiness.as_json()                 # {"status": "ready", "index": "ok",
                                            #  "generators": {"ollama": "unreachable: cannot connect ...", "extractive": "ok"}}

    The index is touched on every check (``store.count()``: an exact count of its chunks); a generator's
    ``reachable(timeout)`` (None or a reason, see [Generator][enclave.contracts.Generator]) is asked at
    most once per ``cache_seconds`` per generator, so a probe every second does not call external APIs
    every second. All checks run in parallel and each waits ``timeout`` seconds at
    most (plus a second's grace for the generators' own limits): a check never takes much longer than
    ``timeout``. Never raises: any error becomes that entry's reason. ``clock`` (monotonic seconds) is
    for tests. Thread-safe.
    """

    def __init__(self, timeout: float = 2.0, cache_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int], tuple[float, str]] = {}  # (name, id) → (checked at, state)

    def check(self, store: ChunkStore, generators: Sequence[Generator]) -> Readiness:
        now = self._clock()
        states: dict[str, str] = {}
        due = []
        with self._lock:
            for generator in generators:
                cached = self._cache.get(self._key(generator))
                if cached is not None and now - cached[0] < self.cache_seconds:
                    states[generator.name] = cached[1]
                else:
                    due.append(generator)
        pool = ThreadPoolExecutor(max_workers=1 + len(due), thread_name_prefix="readiness")
        try:
            index_check = pool.submit(self._index_state, store)
            checks = {generator.name: (generator, pool.submit(self._generator_state, generator)) for generator in due}
            wait([index_check, *(future for _, future in checks.values())], timeout=self.timeout + 1.0)
            index_state = (index_check.result() if index_check.done()
                           else f"unreachable: no answer within {self.timeout:g} s")
            for name, (generator, future) in checks.items():
                state = future.result() if future.done() else f"unreachable: no answer within {self.timeout:g} s"
                states[name] = state
                with self._lock:
                    self._cache[self._key(generator)] = (now, state)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return Readiness(index=index_state, generators={g.name: states[g.name] for g in generators})

    @staticmethod
    def _key(generator: Generator) -> tuple[str, int]:
        return generator.name, id(generator)

    @staticmethod
    def _index_state(store: ChunkStore) -> str:
        try:
            store.count()
        except Exception as exc:  # whatever the backend raises is the reason
            return f"unreachable: {type(exc).__name__}: {exc}"
        return OK

    def _generator_state(self, generator: Generator) -> str:
        try:
            reason = generator.reachable(self.timeout)
        except Exception as exc:  # a reachable() that raises after all
            return f"unreachable: {type(exc).__name__}: {exc}"
        return OK if reason is None else f"unreachable: {reason}"
