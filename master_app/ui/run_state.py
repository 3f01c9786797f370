"""A job running in the background of a Streamlit session, and what the page shows of it.

Streamlit reruns the whole script on every interaction, so a job must not run in the
script thread. :class:`BackgroundRun` runs one coroutine in its own thread with its own
event loop; the coroutine receives an ``on_event`` callback and an ``asyncio.Event`` that
:meth:`BackgroundRun.cancel` sets from any thread. The page polls :meth:`snapshot`, which
is cheap, thread-safe and never blocks.

Nothing here imports Streamlit, so it is unit-tested on its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from master_app.events import EventKind, ProgressEvent

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: What the background coroutine is given: ``(on_event, cancel) -> awaitable outcome``.
JobFactory = Callable[[Callable[[ProgressEvent], None], asyncio.Event], Awaitable[T]]

#: How a shard looks in a worker's lane, after the latest event about it there.
#: ``superseded``: a copy still out on this worker after the shard completed elsewhere.
LANE_STATES = ("running", "done", "failed", "retried", "hedged", "superseded", "cancelled")

_KIND_TO_LANE = {
    EventKind.DISPATCHED: "running",
    EventKind.COMPLETED: "done",
    EventKind.FAILED: "failed",
    EventKind.RETRIED: "retried",
    EventKind.HEDGED: "hedged",
    EventKind.CANCELLED: "cancelled",
}


def worker_label(event: ProgressEvent) -> str:
    """The lane an event belongs to: the worker's URL (or id), ``"—"`` for none."""
    if event.worker_url:
        return event.worker_url
    return f"worker {event.worker_id}" if event.worker_id is not None else "—"


@dataclass
class Lanes:
    """Which worker holds which shard, folded from :class:`ProgressEvent` s.

    ``lanes[worker][idx]`` is the latest state of shard ``idx`` on that worker. The
    totals come from the events themselves (the dispatcher's own counts).
    """

    total: int
    lanes: dict[str, dict[int, str]] = field(default_factory=dict)
    done: int = 0
    failed: int = 0
    events: int = 0
    completed: set[int] = field(default_factory=set)

    def apply(self, event: ProgressEvent) -> None:
        """Fold one progress event in."""
        self.events += 1
        state = _KIND_TO_LANE.get(event.kind)
        if state is not None:
            self.lanes.setdefault(worker_label(event), {})[event.idx] = state
        if event.kind is EventKind.COMPLETED:
            self.completed.add(event.idx)
        if event.total:
            self.total = event.total
        self.done = max(self.done, event.done)
        self.failed = max(self.failed, event.failed)

    @property
    def fraction(self) -> float:
        """Progress between 0 and 1 (completed and failed-for-good shards)."""
        return min(1.0, (self.done + self.failed) / self.total) if self.total else 0.0

    def rows(self) -> list[dict[str, Any]]:
        """One row per worker: its shard numbers by state, for a table."""
        out: list[dict[str, Any]] = []
        for worker in sorted(self.lanes):
            shards = self.lanes[worker]
            row: dict[str, Any] = {"worker": worker}
            shown = {i: ("superseded" if s == "running" and i in self.completed else s)
                     for i, s in shards.items()}
            for state in LANE_STATES:
                row[state] = ", ".join(str(i) for i, s in sorted(shown.items()) if s == state)
            out.append(row)
        return out


@dataclass(frozen=True)
class RunSnapshot(Generic[T]):
    """What the page shows of a background run at one moment."""

    task_id: str
    total: int
    done: int
    failed: int
    fraction: float
    lane_rows: list[dict[str, Any]]
    running: bool
    cancelling: bool
    outcome: T | None
    error: str | None
    elapsed_s: float


class BackgroundRun(Generic[T]):
    """One job in its own thread and event loop; the page reads :meth:`snapshot`."""

    def __init__(self, task_id: str, total: int, factory: JobFactory[T]) -> None:
        self.task_id = task_id
        self._factory = factory
        self._lock = threading.Lock()
        self._lanes = Lanes(total=total)
        self._outcome: T | None = None
        self._error: str | None = None
        self._started = time.monotonic()
        self._finished: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel: asyncio.Event | None = None
        self._cancel_requested = False
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._main, name=f"nadg-run-{task_id}", daemon=True
        )

    def start(self) -> BackgroundRun[T]:
        """Start the thread; returns self."""
        self._thread.start()
        self._ready.wait(timeout=10)
        return self

    def _on_event(self, event: ProgressEvent) -> None:
        with self._lock:
            self._lanes.apply(event)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._cancel = asyncio.Event()
            self._loop = loop
            self._ready.set()
            if self._cancel_requested:
                self._cancel.set()
            outcome = loop.run_until_complete(self._factory(self._on_event, self._cancel))
            with self._lock:
                self._outcome = outcome
        except Exception as exc:  # the page shows it as a message, never a traceback
            logger.exception("background run of task %s failed", self.task_id)
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()
            with self._lock:
                self._finished = time.monotonic()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def cancel(self) -> None:
        """Ask the job to stop (thread-safe; the job decides how fast it stops)."""
        self._cancel_requested = True
        loop, event = self._loop, self._cancel
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed between the check and the call
                pass

    @property
    def running(self) -> bool:
        """True while the job has not finished."""
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread (for tests and shutdown only; never in the script thread)."""
        self._thread.join(timeout)

    def snapshot(self) -> RunSnapshot[T]:
        """A consistent copy of the run's state right now."""
        with self._lock:
            end = self._finished if self._finished is not None else time.monotonic()
            return RunSnapshot(
                task_id=self.task_id,
                total=self._lanes.total,
                done=self._lanes.done,
                failed=self._lanes.failed,
                fraction=self._lanes.fraction,
                lane_rows=self._lanes.rows(),
                running=self._finished is None,
                cancelling=self._cancel_requested and self._finished is None,
                outcome=self._outcome,
                error=self._error,
                elapsed_s=end - self._started,
            )


class RunRegistry:
    """The background runs of this master process, by task id (shared by sessions)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, BackgroundRun[Any]] = {}

    def start(self, task_id: str, total: int, factory: JobFactory[Any]) -> BackgroundRun[Any]:
        """Start a run for ``task_id`` unless one is already running; returns it."""
        with self._lock:
            existing = self._runs.get(task_id)
            if existing is not None and existing.running:
                return existing
            run: BackgroundRun[Any] = BackgroundRun(task_id, total, factory)
            self._runs[task_id] = run
        return run.start()

    def get(self, task_id: str) -> BackgroundRun[Any] | None:
        """The run of ``task_id``, if this process started one."""
        with self._lock:
            return self._runs.get(task_id)

    def active(self) -> list[str]:
        """Task ids whose runs are still going."""
        with self._lock:
            return [tid for tid, run in self._runs.items() if run.running]
