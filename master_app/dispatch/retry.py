"""Retries: how many attempts a subtask gets and how long it waits between them.

The wait after the n-th failed attempt is ``backoff_base_s * 2 ** (n - 1)``, capped at
``backoff_max_s``, times a jitter factor drawn from [0.5, 1.5). A worker that answers busy
(503 backpressure) is paused for its ``retry_after_s``, capped the same way, and that
attempt is not counted.

Hand-written on purpose (the Gemini call's retries use tenacity): the dispatcher does not
retry a call in place; a failed subtask goes back in the queue with a ``not_before`` time
and may go to another worker, so the policy is two numbers the scheduler asks for, not a
loop around one call.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from master_app.settings import MasterSettings


class RetryPolicy:
    """Attempt limit and backoff with jitter, read from the master's settings."""

    def __init__(self, settings: MasterSettings,
                 rand: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self._rand = rand  # None: random.random, looked up at each draw

    def exhausted(self, attempts: int) -> bool:
        """True when a subtask has used all of its ``max_attempts``."""
        return attempts >= self.settings.max_attempts

    def backoff_s(self, attempts: int) -> float:
        """Seconds to wait before the next attempt after ``attempts`` attempts, with jitter."""
        delay: float = min(self.settings.backoff_max_s,
                           self.settings.backoff_base_s * 2 ** (attempts - 1))
        jitter = self._rand() if self._rand is not None else random.random()
        return delay * (0.5 + jitter)

    def busy_pause_s(self, retry_after_s: float) -> float:
        """How long to leave a busy (503 backpressure) worker alone."""
        return min(retry_after_s, self.settings.backoff_max_s)
