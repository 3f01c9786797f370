"""Per-address request budgets on a worker: token buckets, bounded in memory.

Three budgets, each per client address:

* failed authentications (default burst 10, 10 a minute): once spent, every unsigned or
  wrongly signed request from that address gets 429 with ``Retry-After`` until the bucket
  refills (see :mod:`worker_node.auth` for why a right signature still passes);
* unsigned legacy clients (``NADG_COMPAT_V1`` bearer header): 60 a minute, burst 10;
* signed master traffic: configurable (``NADG_SIGNED_RATE``, 0 = unlimited), far above
  what the benchmarks send.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class BucketMap:
    """One token bucket per key (``rate`` tokens a second, ``burst`` at most).

    At most ``max_keys`` buckets are kept; the least recently used one is dropped first
    (a dropped bucket is full again, which errs on the side of serving).
    """

    def __init__(self, rate: float, burst: float, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def _wait(self, bucket: _Bucket) -> float:
        if self.rate <= 0:
            return math.inf
        return (1.0 - bucket.tokens) / self.rate

    def take(self, key: str) -> float | None:
        """Spend one token; None when there was one, else seconds until there is."""
        with self._lock:
            bucket = self._bucket(key, self.clock())
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return self._wait(bucket)

    def empty_for(self, key: str) -> float | None:
        """Seconds until ``key`` has a token again; None when it has one now."""
        with self._lock:
            bucket = self._bucket(key, self.clock())
            return None if bucket.tokens >= 1.0 else self._wait(bucket)


class AuthThrottle:
    """The three per-address budgets of one worker."""

    def __init__(self, *, fail_burst: int = 10, fail_per_minute: float = 10.0,
                 legacy_per_minute: float = 60.0, legacy_burst: int = 10,
                 signed_per_s: float = 2000.0, signed_burst: int = 4000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = BucketMap(fail_per_minute / 60.0, fail_burst, clock=clock)
        self.legacy = BucketMap(legacy_per_minute / 60.0, legacy_burst, clock=clock)
        self.signed = (BucketMap(signed_per_s, signed_burst, clock=clock)
                       if signed_per_s > 0 else None)

    def blocked(self, address: str) -> float | None:
        """Seconds ``address`` must wait after too many failed authentications, or None."""
        return self.failures.empty_for(address)

    def failed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        self.failures.take(address)

    def signed_request(self, address: str) -> float | None:
        """Spend one signed request; seconds to wait when the budget is spent."""
        return self.signed.take(address) if self.signed is not None else None

    def legacy_request(self, address: str) -> float | None:
        """Spend one legacy (bearer) request; seconds to wait when the budget is spent."""
        return self.legacy.take(address)


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(min(seconds, 3600.0))))
