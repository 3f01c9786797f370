"""A compact, rate-bounded view of a running task, for pages that watch it.

:class:`ProgressSnapshot` is counts and per-worker summaries, never the task's rows: two
aggregate queries (:meth:`~database.store.JobStore.subtask_counts_by_worker` and the task
row) plus the registry's names, whatever the task's size. :class:`ProgressReader` hands out
the same snapshot to every caller within ``min_interval_s``, so ten open pages polling
cost the store what one does. It reads the store only: it shares no lock and no state
with the run's event loop, so watching cannot slow the run down beyond the reads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from database.models import SubtaskStatus, TaskStatus
from database.store import Store

#: Seconds a snapshot is served again before the store is read anew.
MIN_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class WorkerProgress:
    """What one worker did for a task so far (``worker_id`` None: not sent yet)."""

    worker_id: int | None
    name: str | None
    completed: int
    running: int
    failed: int


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """A task's progress at ``at`` (UNIX seconds): counts, never rows."""

    task_id: str
    status: TaskStatus
    total: int
    completed: int
    running: int
    pending: int
    failed: int
    cancelled: int
    workers: tuple[WorkerProgress, ...]
    at: float

    @property
    def finished(self) -> int:
        """Subtasks with an outcome (completed, failed or cancelled)."""
        return self.completed + self.failed + self.cancelled

    @property
    def fraction(self) -> float:
        """Share of subtasks with an outcome, 0..1."""
        return self.finished / self.total if self.total else 1.0


def read_snapshot(store: Store, task_id: str) -> ProgressSnapshot:
    """Read one snapshot from the store (raises TaskNotFound)."""
    record = store.get_task_record(task_id)
    by_worker = store.subtask_counts_by_worker(task_id)
    names = ({w.id: w.name for w in store.list_workers()}
             if any(wid is not None for wid in by_worker) else {})
    totals: dict[SubtaskStatus, int] = {}
    workers = []
    for wid, counts in sorted(by_worker.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        for status, n in counts.items():
            totals[status] = totals.get(status, 0) + n
        if wid is not None:
            workers.append(WorkerProgress(
                wid, names.get(wid), counts.get(SubtaskStatus.COMPLETED, 0),
                counts.get(SubtaskStatus.RUNNING, 0), counts.get(SubtaskStatus.FAILED, 0)))
    return ProgressSnapshot(
        task_id=task_id, status=record.status, total=record.subtask_count,
        completed=totals.get(SubtaskStatus.COMPLETED, 0),
        running=totals.get(SubtaskStatus.RUNNING, 0),
        pending=totals.get(SubtaskStatus.PENDING, 0),
        failed=totals.get(SubtaskStatus.FAILED, 0),
        cancelled=totals.get(SubtaskStatus.CANCELLED, 0),
        workers=tuple(workers), at=time.time())


class ProgressReader:
    """Snapshots at a bounded rate: at most one store read per task per interval."""

    def __init__(self, store: Store, min_interval_s: float = MIN_INTERVAL_S) -> None:
        self.store = store
        self.min_interval_s = min_interval_s
        self.reads = 0
        self._lock = threading.Lock()  # the readers' own; the run never takes it
        self._cache: dict[str, tuple[float, ProgressSnapshot]] = {}

    def snapshot(self, task_id: str) -> ProgressSnapshot:
        """The latest snapshot, read anew only when the cached one is older than the
        interval (or the task has finished since)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(task_id)
            if cached is not None and now - cached[0] < self.min_interval_s:
                return cached[1]
            snap = read_snapshot(self.store, task_id)
            self.reads += 1
            self._cache[task_id] = (now, snap)
            if len(self._cache) > 256:  # forget the oldest: pages watch a few tasks
                oldest = min(self._cache, key=lambda k: self._cache[k][0])
                self._cache.pop(oldest, None)
            return snap
