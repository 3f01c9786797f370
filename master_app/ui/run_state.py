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

from master_app.service import EventKind, ProgressEvent

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: What the background coroutine is given: ``(on_event, cancel) -> awaitable outcome``.
JobFactory = Callable[[Callable[[ProgressEvent], None], asyncio.Event], Awaitable[T]]

#: The state of one subtask in the live view, by its code in :attr:`Lanes.codes`.
STATES = ("pending", "running", "done", "failed", "retrying", "cancelled")
PENDING, RUNNING, DONE, FAILED, RETRYING, CANCELLED = range(len(STATES))
#: Final states: a later event about the same subtask (a superseded copy) does not undo them.
_FINAL = (DONE, FAILED, CANCELLED)

_KIND_TO_STATE = {
    EventKind.DISPATCHED: RUNNING,
    EventKind.HEDGED: RUNNING,
    EventKind.COMPLETED: DONE,
    EventKind.FAILED: FAILED,
    EventKind.RETRIED: RETRYING,
    EventKind.CANCELLED: CANCELLED,
}


def worker_label(event: ProgressEvent) -> str:
    """The lane an event belongs to: the worker's URL (or id), ``"—"`` for none."""
    if event.worker_url:
        return event.worker_url
    return f"worker {event.worker_id}" if event.worker_id is not None else "—"


@dataclass
class WorkerLane:
    """One worker's share of a run: what it holds now, what it finished, and when."""

    in_flight: set[int] = field(default_factory=set)
    done: int = 0
    failed: int = 0
    first_s: float | None = None
    last_s: float | None = None

    def throughput(self, now: float) -> float:
        """Completed subtasks per second since this worker got its first one."""
        if self.first_s is None or not self.done:
            return 0.0
        span = max((self.last_s or now) - self.first_s, 1e-3)
        return self.done / span


@dataclass
class Lanes:
    """Each subtask's state and each worker's lane, folded from :class:`ProgressEvent` s.

    ``codes[idx]`` is subtask ``idx``'s state (an index into :data:`STATES`), one byte per
    subtask, so a snapshot of thousands of subtasks is a cheap copy. The done/failed totals
    come from the events themselves (the dispatcher's own counts); cancelled subtasks are
    counted apart from failed ones.
    """

    total: int
    codes: bytearray = field(default_factory=bytearray)
    workers: dict[str, WorkerLane] = field(default_factory=dict)
    done: int = 0
    failed_or_cancelled: int = 0
    cancelled: int = 0
    events: int = 0
    first_s: float | None = None

    def __post_init__(self) -> None:
        if len(self.codes) < self.total:
            self.codes.extend(bytes(self.total - len(self.codes)))

    def _set(self, idx: int, code: int) -> None:
        if idx >= len(self.codes):
            self.codes.extend(bytes(idx + 1 - len(self.codes)))
        now = self.codes[idx]
        if now in _FINAL and code != DONE:
            return  # a superseded copy's news does not undo a final state
        if now == CANCELLED and code == DONE:
            self.cancelled -= 1
        if code == CANCELLED and now != CANCELLED:
            self.cancelled += 1
        self.codes[idx] = code

    def apply(self, event: ProgressEvent, now: float | None = None) -> None:
        """Fold one progress event in."""
        now = time.monotonic() if now is None else now
        self.events += 1
        if self.first_s is None:
            self.first_s = now
        code = _KIND_TO_STATE.get(event.kind)
        if code is not None:
            self._set(event.idx, code)
            if event.worker_url or event.worker_id is not None:
                lane = self.workers.setdefault(worker_label(event), WorkerLane())
                if lane.first_s is None:
                    lane.first_s = now
                if code == RUNNING:
                    lane.in_flight.add(event.idx)
                else:
                    lane.in_flight.discard(event.idx)
                if code == DONE:
                    lane.done += 1
                    lane.last_s = now
                elif code == FAILED:
                    lane.failed += 1
            if code in _FINAL:  # any other copy of it is over too
                for other in self.workers.values():
                    other.in_flight.discard(event.idx)
        if event.total:
            self.total = event.total
        self.done = max(self.done, event.done)
        self.failed_or_cancelled = max(self.failed_or_cancelled, event.failed)

    @property
    def failed(self) -> int:
        """Subtasks that failed for good (cancelled ones are counted apart)."""
        return max(0, self.failed_or_cancelled - self.cancelled)

    @property
    def fraction(self) -> float:
        """Progress between 0 and 1 (completed, failed-for-good and cancelled subtasks)."""
        if not self.total:
            return 0.0
        return min(1.0, (self.done + self.failed_or_cancelled) / self.total)

    def end(self, cancelled: bool) -> None:
        """The run is over: no lane holds anything any more; subtasks still marked running
        or waiting for a retry end as cancelled when the run was cancelled."""
        for lane in self.workers.values():
            lane.in_flight.clear()
        if cancelled:
            for idx, code in enumerate(self.codes):
                if code in (RUNNING, RETRYING):
                    self._set(idx, CANCELLED)

    def eta_s(self, now: float) -> float | None:
        """Seconds until the rest is done at the rate so far (None before any result)."""
        finished = self.done + self.failed_or_cancelled
        if self.first_s is None or not finished or finished >= self.total:
            return None
        rate = finished / max(now - self.first_s, 1e-3)
        return (self.total - finished) / rate

    def rows(self, now: float | None = None) -> list[dict[str, Any]]:
        """One row per worker: how many subtasks it holds, finished and failed, and its
        throughput (counts, so the table reads the same at 10 or 10,000 subtasks)."""
        now = time.monotonic() if now is None else now
        return [{"worker": name, "running": len(lane.in_flight), "done": lane.done,
                 "failed": lane.failed, "per second": round(lane.throughput(now), 2)}
                for name, lane in sorted(self.workers.items())]


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
    cancelled: int = 0
    codes: bytes = b""
    eta_s: float | None = None


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
                self._lanes.end(cancelled=self._cancel_requested)
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
        """Wait for the thread (tests, shutdown, and a bounded wait right after a cancel)."""
        self._thread.join(timeout)

    def snapshot(self) -> RunSnapshot[T]:
        """A consistent copy of the run's state right now: a few counters, one byte per
        subtask and one row per worker, so reading it often never slows the run."""
        with self._lock:
            now = time.monotonic()
            end = self._finished if self._finished is not None else now
            lanes = self._lanes
            return RunSnapshot(
                task_id=self.task_id,
                total=lanes.total,
                done=lanes.done,
                failed=lanes.failed,
                fraction=lanes.fraction,
                lane_rows=lanes.rows(now),
                running=self._finished is None,
                cancelling=self._cancel_requested and self._finished is None,
                outcome=self._outcome,
                error=self._error,
                elapsed_s=end - self._started,
                cancelled=lanes.cancelled,
                codes=bytes(lanes.codes),
                eta_s=None if self._finished is not None else lanes.eta_s(now),
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
