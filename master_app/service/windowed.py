"""Large tasks in bounded memory: subtasks stream from the store in windows.

A task with more than :data:`WINDOW` subtasks is never held whole. The runner reads the
subtasks that still need a result ``WINDOW`` at a time (ordered by idx; the next window
is read while the current one runs), dispatches each window, and lets go of its results as
soon as the group commit has made them durable. What is kept across windows is small:
counters, and at most :data:`KEEP_FAILURES` failure rows. The outcome carries no detail
(``TaskOutcome.detail is None``); whoever wants every result reads it from the store.

Progress events count over the whole task (``done``/``total`` are the task's, not the
window's). Cancelling stops the current window and cancels the rest of the task in one
statement (:meth:`~master_app.service.sink.StoreSink.settle`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from database.models import SubtaskRecord, SubtaskStatus, TaskRecord, TaskStatus, WorkerNode
from master_app.dispatch import DispatchReport, EventCallback, Failure, ProgressEvent
from nexus_common.protocol import Subtask

if TYPE_CHECKING:
    from master_app.service.runner import JobRunner, TaskOutcome
    from master_app.service.sink import StoreSink

logger = logging.getLogger(__name__)

#: Subtasks per window (and the size above which a task runs windowed).
WINDOW = 2_000
#: Failure rows an outcome keeps (the store has all of them).
KEEP_FAILURES = 1_000
#: What a window reads: every subtask that still needs a completed result.
TODO = (SubtaskStatus.PENDING, SubtaskStatus.RUNNING, SubtaskStatus.FAILED,
        SubtaskStatus.CANCELLED)


@dataclasses.dataclass
class _Totals:
    done_before: int = 0
    failed_before: int = 0
    total: int = 0


def _offset_events(on_event: EventCallback | None, totals: _Totals
                   ) -> EventCallback | None:
    """``on_event`` with each window's counts turned into the task's."""
    if on_event is None:
        return None

    def forward(event: ProgressEvent) -> None:
        on_event(dataclasses.replace(
            event, done=event.done + totals.done_before,
            failed=event.failed + totals.failed_before, total=totals.total))

    return forward


async def run_windowed(runner: JobRunner, record: TaskRecord, workers: list[WorkerNode],
                       sink: StoreSink, to_subtask: Callable[[SubtaskRecord], Subtask], *,
                       on_event: EventCallback | None, cancel: asyncio.Event | None,
                       deadline_s: float | None, window: int = WINDOW) -> TaskOutcome:
    """Run a large task window by window; returns its outcome (without detail)."""
    from master_app.service.runner import TaskOutcome

    store, task_id = runner.store, record.id
    counts = await asyncio.to_thread(store.subtask_counts, task_id)
    totals = _Totals(done_before=counts.get(SubtaskStatus.COMPLETED, 0),
                     total=record.subtask_count)
    forward = _offset_events(on_event, totals)
    overall = DispatchReport()
    failures: list[Failure] = []
    failed_count = 0
    started = time.monotonic()

    def read(after: int) -> list[SubtaskRecord]:
        return store.subtask_window(task_id, after_idx=after, limit=window, statuses=TODO)

    nxt: asyncio.Task[list[SubtaskRecord]] | None = asyncio.create_task(
        asyncio.to_thread(read, -1))
    logger.info("task %s: %d subtasks, dispatching in windows of %d to %d workers", task_id,
                record.subtask_count, window, len(workers))
    while nxt is not None:
        rows = await nxt
        if not rows:
            break
        last = rows[-1].idx
        todo = [to_subtask(r) for r in rows]
        del rows
        # the next window is read while this one runs
        nxt = asyncio.create_task(asyncio.to_thread(read, last)) if len(todo) == window \
            else None
        left = None if deadline_s is None else max(0.001,
                                                   deadline_s - (time.monotonic() - started))
        report = await runner.dispatcher.run_subtasks(
            todo, workers, on_event=forward, sink=sink, cancel=cancel, deadline_s=left)
        await sink.commit.flush()
        await asyncio.to_thread(_record_missed, runner, report, sink)
        done_here = len(report.results)
        totals.done_before += done_here
        window_failed = [f for f in report.failures.values() if not f.cancelled]
        failed_count += len(window_failed)
        totals.failed_before += len(window_failed)
        failures += window_failed[:max(0, KEEP_FAILURES - len(failures))]
        for key in ("attempts", "retries", "hedges"):
            setattr(overall, key, getattr(overall, key) + getattr(report, key))
        overall.round_trips_ms += report.round_trips_ms[-1000:]
        sink.attempts.clear()
        sink.written.clear()
        if report.cancelled or report.deadline_passed:
            overall.cancelled, overall.deadline_passed = report.cancelled, \
                report.deadline_passed
            if nxt is not None:
                nxt.cancel()
            break
    overall.duration_s = time.monotonic() - started
    if overall.deadline_passed:  # what the deadline left unsent fails with that reason
        await asyncio.to_thread(store.cancel_unfinished_subtasks, task_id,
                                f"the task deadline of {deadline_s:g}s passed")
    await sink.settle(task_id)
    counts = await asyncio.to_thread(store.subtask_counts, task_id)
    total = sum(counts.values())
    done = counts.get(SubtaskStatus.COMPLETED, 0)
    summary: dict[str, Any] = {
        "total": total, "completed": done, "failed": total - done,
        "attempts": overall.attempts, "retries": overall.retries, "hedges": overall.hedges,
        "duration_s": round(overall.duration_s, 3), "windowed": window}
    error = None
    if done == total:
        status = TaskStatus.COMPLETED
    elif overall.cancelled:
        status, error = TaskStatus.CANCELLED, "cancelled"
    else:
        status = TaskStatus.FAILED
        reasons = sorted({f.reason for f in failures})
        error = (f"{total - done} of {total} subtasks failed: " + "; ".join(reasons[:3])
                 if reasons else f"{total - done} of {total} subtasks did not complete")
    await asyncio.to_thread(store.set_task_status, task_id, status, result_summary=summary,
                            error=error)
    logger.info("task %s %s: %d/%d completed (windowed)", task_id, status.value, done, total)
    return TaskOutcome(task_id=task_id, status=status, total=total, completed=done,
                       failures=failures, error=error, report=overall, detail=None)


def _record_missed(runner: JobRunner, report: DispatchReport, sink: StoreSink) -> None:
    """Write what the group commit could not write as it landed (a store error then); a
    store error here propagates and leaves the task resumable."""
    store = runner.store
    for sid, result in report.results.items():
        if sid not in sink.written:
            if not store.record_result(sid, SubtaskStatus.COMPLETED,
                                       result=result.model_dump(mode="json"),
                                       worker_id=report.winners.get(sid)):
                sink.refused.add(sid)
            sink.written.add(sid)
    for sid, failure in report.failures.items():
        if sid not in sink.written and not failure.cancelled:
            store.record_result(sid, SubtaskStatus.FAILED, error=failure.reason,
                                worker_id=failure.worker_id)
            sink.written.add(sid)
