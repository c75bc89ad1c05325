"""llms.circuit_breaker: closed -> open after N consecutive failures -> half-open probe after the cool-down."""

from __future__ import annotations

import threading

import pytest

from enclave.llms.circuit_breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_probes_after_the_cooldown():
    clock = Clock()
    breaker = CircuitBreaker(failures=3, cooldown=30.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_success()  # a success resets the count: failures must be consecutive
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 29.5
    assert not breaker.allow() and breaker.retry_in == pytest.approx(0.5)
    clock.now += 0.5
    assert breaker.state == "half-open"
    assert breaker.allow()            # the probe
    assert not breaker.allow()        # one probe at a time
    breaker.record_failure()          # the probe failed: open for another cool-down
    assert breaker.state == "open" and breaker.retry_in == pytest.approx(30.0)
    clock.now += 30
    assert breaker.allow()
    breaker.record_success()          # the probe answered: closed again
    assert breaker.state == "closed" and breaker.allow() and breaker.allow() and breaker.retry_in == 0.0


def test_only_one_of_many_threads_gets_the_probe():
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=5.0, clock=clock)
    breaker.record_failure()
    clock.now += 5
    allowed = []
    threads = [threading.Thread(target=lambda: allowed.append(breaker.allow())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 1


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        CircuitBreaker(failures=0)
    with pytest.raises(ValueError):
        CircuitBreaker(cooldown=-1)
