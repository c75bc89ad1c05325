"""Per-caller rate limiting: a token bucket per API key (or principal, or client address)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """``per_minute`` requests a minute per caller, in bursts of up to ``burst``.

    Usage::

        limiter = RateLimiter(per_minute=120, burst=20)
        wait = limiter.acquire("key:3f2a...")    # 0.0: go ahead; > 0: seconds until a request is allowed

    A token bucket (capacity ``burst``, refilled at ``per_minute / 60`` a second) per caller id; idle
    buckets that have refilled are forgotten, so memory stays bounded by the callers of the last minute.
    Thread-safe. The buckets live in this process's memory: each serving process (every ``enclave serve
    --workers`` worker, every host behind a balancer) limits on its own, so N of them let a caller make up
    to N times ``per_minute`` (tests/server/test_several_workers.py).
    """

    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1 or burst < 1:
            raise ValueError("per_minute and burst must be at least 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller → (tokens, when)
        self._lock = threading.Lock()
        self._swept = clock()

    def acquire(self, caller: str) -> float:
        """Take one request for ``caller``: returns 0.0 when allowed, else the seconds to wait (nothing taken)."""
        with self._lock:
            now = self._clock()
            tokens, when = self._buckets.get(caller, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.rate)
            if tokens < 1.0:
                self._buckets[caller] = (tokens, now)
                return (1.0 - tokens) / self.rate
            self._buckets[caller] = (tokens - 1.0, now)
            if now - self._swept > 60.0:
                self._sweep(now)
            return 0.0

    def _sweep(self, now: float) -> None:
        refill = self.burst / self.rate  # a bucket idle this long is full again: the same as none
        self._buckets = {c: (t, w) for c, (t, w) in self._buckets.items() if now - w < refill}
        self._swept = now
