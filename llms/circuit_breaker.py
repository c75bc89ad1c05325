"""A circuit breaker per generator: skip one that keeps failing, probe it again after a cool-down.

The classic three states (Nygard, "Release It!", 2007): **closed** (calls pass; consecutive failures
are counted), **open** (after ``failures`` consecutive failures: calls are skipped for ``cooldown``
seconds), **half-open** (after the cool-down one call, the probe, passes; its success closes the
circuit, its failure opens it for another cool-down). Thread-safe: the chat endpoint's threads share one.
It lives in one process's memory: each serving process (``enclave serve --workers`` worker, or host behind a
balancer) has its own breakers and finds a failing generator out by itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Decides whether a generator is worth calling now.

    Usage::

        breaker = CircuitBreaker(failures=3, cooldown=30.0)
        if breaker.allow():
            try:
                answer = generator.run(request)
                breaker.record_success()
            except GeneratorUnavailable:
                breaker.record_failure()
        else:
            ...  # skipped: breaker.retry_in seconds until the next probe

    ``failures`` >= 1 consecutive failures open the circuit; ``cooldown`` is in seconds; ``clock``
    returns seconds (monotonic) and exists for tests.
    """

    def __init__(self, failures: int = 3, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or cooldown < 0:
            raise ValueError("failures must be >= 1 and cooldown >= 0 seconds")
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self.cooldown else "open"

    @property
    def retry_in(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when closed or half-open)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """Whether to call now: always when closed; never when open; when half-open, for one probe at a
        time (others are skipped until it reports)."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "open" or self._probing:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._consecutive, self._opened_at, self._probing = 0, None, False

    def release(self) -> None:
        """End a call without a verdict (the caller stopped reading, or the call was never made): a
        half-open probe is given back, so the next call probes again; the count stands."""
        with self._lock:
            self._probing = False

    def record_failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._probing or self._consecutive >= self.failures:
                self._opened_at = self._clock()
            self._probing = False
