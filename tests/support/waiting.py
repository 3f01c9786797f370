"""Wait on a condition with a deadline: the only way tests synchronise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the condition may fail while starting
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition!r}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


async def async_wait_until(
    condition: Callable[[], Awaitable[T]], *, timeout: float = 10.0, interval: float = 0.02,
    what: str = "",
) -> T:
    """Async twin of :func:`wait_until`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await condition()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition!r}")


async def hold_until(condition: Callable[[], bool], *, timeout: float,
                     interval: float = 0.02) -> bool:
    """A fake server's hold: wait until ``condition()`` is true (True) or ``timeout``
    seconds pass (False), never longer; the event loop keeps serving meanwhile."""
    deadline = time.monotonic() + timeout
    while not condition():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(interval, left))
    return True
