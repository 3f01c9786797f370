"""A circuit breaker per worker: stop sending work to a worker that keeps failing.

States: ``closed`` (normal) → ``open`` after ``threshold`` consecutive failures (no work
sent) → ``half_open`` once ``cooldown_s`` has passed (one probe allowed) → ``closed`` on the
probe's success, back to ``open`` on its failure. The clock is injectable for tests.

Hand-written on purpose (the Gemini call's retries use tenacity): a breaker library wraps
one call, but this state is read by the scheduler itself — which lane may take work,
when a half-open probe may go, when every worker is down — and mirrored to the registry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from database.models import CircuitState

logger = logging.getLogger(__name__)


class CircuitBreaker:
    """The breaker of one worker."""

    def __init__(self, threshold: int = 3, cooldown_s: float = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self.opened_at = 0.0
        self.probe_in_flight = False

    @property
    def state(self) -> CircuitState:
        """The current state (an open breaker turns half-open after the cooldown)."""
        if self._state is CircuitState.OPEN and self._clock() - self.opened_at >= self.cooldown_s:
            self._state = CircuitState.HALF_OPEN
            self.probe_in_flight = False
        return self._state

    def allows(self) -> bool:
        """True if a request may go out now (closed, or a half-open probe slot is free)."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        return state is CircuitState.HALF_OPEN and not self.probe_in_flight

    def probe_now(self) -> None:
        """The worker answers again (its ``/health`` did): allow the half-open probe now
        rather than at the end of the cooldown."""
        if self.state is CircuitState.OPEN:
            self._state = CircuitState.HALF_OPEN
            self.probe_in_flight = False

    def on_send(self) -> None:
        """A request went out; in half-open it is the one probe."""
        if self.state is CircuitState.HALF_OPEN:
            self.probe_in_flight = True

    def on_success(self) -> CircuitState:
        """The worker answered: close the breaker."""
        self.consecutive_failures = 0
        self.probe_in_flight = False
        self._state = CircuitState.CLOSED
        return self._state

    def on_failure(self) -> CircuitState:
        """The worker failed a call: open after ``threshold`` in a row, or a failed probe."""
        self.consecutive_failures += 1
        state = self.state
        if state is CircuitState.HALF_OPEN or self.consecutive_failures >= self.threshold:
            if state is not CircuitState.OPEN:
                self.opened_at = self._clock()
            self._state = CircuitState.OPEN
            self.probe_in_flight = False
        return self._state

    def seconds_until_probe(self) -> float:
        """How long until an open breaker allows a probe (0 when not open)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self.cooldown_s - (self._clock() - self.opened_at))
