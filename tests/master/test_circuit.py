"""The circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

from database.models import CircuitState
from master_app.dispatch import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_then_half_open_probe_closes_it() -> None:
    clock = Clock()
    b = CircuitBreaker(threshold=3, cooldown_s=10, clock=clock)
    assert b.on_failure() is CircuitState.CLOSED and b.on_failure() is CircuitState.CLOSED
    assert b.on_failure() is CircuitState.OPEN and not b.allows()
    clock.now += 9.9
    assert b.state is CircuitState.OPEN and b.seconds_until_probe() > 0
    clock.now += 0.2
    assert b.state is CircuitState.HALF_OPEN and b.allows()
    b.on_send()
    assert not b.allows(), "only one probe at a time"
    assert b.on_success() is CircuitState.CLOSED and b.allows()


def test_failed_probe_reopens_for_a_full_cooldown() -> None:
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooldown_s=5, clock=clock)
    b.on_failure()
    clock.now += 5
    assert b.allows()
    b.on_send()
    assert b.on_failure() is CircuitState.OPEN
    clock.now += 4
    assert not b.allows()
    clock.now += 1
    assert b.allows()


def test_success_resets_the_count() -> None:
    b = CircuitBreaker(threshold=2, cooldown_s=5, clock=Clock())
    b.on_failure()
    b.on_success()
    assert b.on_failure() is CircuitState.CLOSED
