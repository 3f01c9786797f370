"""Failed sign-ins, throttled: a few free tries, then a lockout that doubles with each failure.

One :class:`LoginThrottle` lives as long as the Streamlit server and is shared by every
browser session. A sign-in attempt is checked against several keys at once (the browser
session and the client address): the longest lockout among them applies, so opening a new
session does not reset an address, and one address cannot lock out another. While locked,
attempts are refused without checking the password at all, and they do not extend the
lockout. :meth:`LoginThrottle.attempt` counts an attempt as a failure *before* the
password is checked (a right one is refunded by :meth:`LoginThrottle.succeeded`), so many
guesses sent at once from parallel sessions cannot all slip in before the first fails.
The table is bounded (least recently failed keys go first), so a flood of addresses
cannot grow it without limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class LoginThrottle:
    """Per-key failure counts with exponential lockout.

    After ``free_failures`` failures in a row a key is locked for ``base_lockout_s``; each
    further failure doubles it, up to ``max_lockout_s``. A key with no failure for
    ``forget_after_s`` (and no lockout running) starts again from zero.
    """

    def __init__(self, *, free_failures: int = 5, base_lockout_s: float = 30.0,
                 max_lockout_s: float = 3600.0, forget_after_s: float = 3600.0,
                 max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        if free_failures < 1 or base_lockout_s <= 0 or max_lockout_s < base_lockout_s:
            raise ValueError("free_failures >= 1 and 0 < base_lockout_s <= max_lockout_s")
        self.free_failures = free_failures
        self.base_lockout_s = base_lockout_s
        self.max_lockout_s = max_lockout_s
        self.forget_after_s = forget_after_s
        self.max_keys = max_keys
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> _Record | None:
        record = self._records.get(key)
        if record is None:
            return None
        if record.locked_until <= now and now - record.last_failure > self.forget_after_s:
            del self._records[key]
            return None
        return record

    def wait_s(self, keys: Iterable[str]) -> float:
        """Seconds until any of ``keys`` may try again (0 when none is locked)."""
        with self._lock:
            now = self._clock()
            waits = [r.locked_until - now for k in keys if (r := self._live(k, now))]
        return max([0.0, *waits])

    def attempt(self, keys: Iterable[str]) -> float:
        """Start one attempt, atomically: when a key is locked, return the seconds to wait
        (and record nothing); otherwise count the attempt as failed and return 0."""
        keys = list(keys)
        with self._lock:
            now = self._clock()
            waits = [r.locked_until - now for k in keys if (r := self._live(k, now))]
            wait = max([0.0, *waits])
            if wait > 0:
                return wait
            self._fail(keys, now)
            return 0.0

    def failed(self, keys: Iterable[str]) -> float:
        """Record one failure for every key; returns the lockout it starts (0 if none yet)."""
        with self._lock:
            return self._fail(keys, self._clock())

    def _fail(self, keys: Iterable[str], now: float) -> float:
        """One more failure for every key (the lock is held); returns the longest lockout."""
        longest = 0.0
        for key in keys:
            record = self._live(key, now) or _Record()
            record.failures += 1
            record.last_failure = now
            extra = record.failures - self.free_failures
            if extra >= 0:
                lockout = min(self.max_lockout_s,
                              self.base_lockout_s * math.pow(2, min(extra, 60)))
                record.locked_until = now + lockout
                longest = max(longest, lockout)
            self._records[key] = record
            self._records.move_to_end(key)
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)
        return longest

    def succeeded(self, keys: Iterable[str]) -> None:
        """The operator's password: forget the failures of these keys."""
        with self._lock:
            for key in keys:
                self._records.pop(key, None)

    def refund(self, keys: Iterable[str]) -> None:
        """A right password that must not reset the count (a viewer's): take back only the
        failure :meth:`attempt` counted in advance for it. Otherwise whoever holds the
        viewer password could clear the lockout of their operator guesses at will."""
        with self._lock:
            for key in keys:
                record = self._records.get(key)
                if record is not None and record.failures > 0:
                    record.failures -= 1

    def failures(self, key: str) -> int:
        """Failures in a row recorded for ``key`` (for the message and for tests)."""
        with self._lock:
            record = self._live(key, self._clock())
            return record.failures if record else 0
