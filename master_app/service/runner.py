"""Durable jobs: persist a task before dispatch, record each result as it lands, resume.

``submit`` writes the task and every subtask to the store before anything is sent;
``run`` dispatches only the subtasks that have no completed result yet, so calling it
again after a crash (``resume_unfinished``) finishes the task without losing a result or
counting one twice (the store keeps the first completed result of each subtask).

A run reads the task's detail (every subtask, results included) from the store once, at
its start. What happens next is known here: the sink sees every attempt and outcome as it
is written, and the dispatch report holds every result. So the finished detail is built
in memory and handed on in :attr:`TaskOutcome.detail` for aggregation; the store is read
again only when it refused one of our results because it already held another one (a
second master or a pull worker won that subtask), so that the detail handed on is the
store's, never a copy that disagrees with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from database.blobs import (
    blob_store_from_env,
    threshold_from_env,
)
from database.leases import is_pull_url
from database.models import (
    SubtaskRecord,
    SubtaskStatus,
    TaskDetail,
    TaskRecord,
    TaskStatus,
    WorkerNode,
)
from database.store import Store
from master_app.dispatch import Dispatcher, DispatchReport, EventCallback, Failure
from master_app.intake import Dataset
from master_app.planning.plan import Plan
from master_app.service.leases import held_elsewhere_status, task_lease
from master_app.service.pull import run_shared
from master_app.service.sink import StoreSink
from master_app.service.windowed import WINDOW, run_windowed
from master_app.service.workers import live_workers
from master_app.settings import MasterSettings
from master_app.sharding import build_shards, payload_of
from nexus_common.protocol import Subtask

logger = logging.getLogger(__name__)


class NoLiveWorkers(RuntimeError):
    """There is work to run but no live worker in the registry."""


@dataclass
class TaskOutcome:
    """How a task ended: its status, the counts, exactly what failed, and its detail.

    ``detail`` is the task as the store now holds it, every subtask's result included:
    aggregate it (:func:`master_app.aggregate.aggregate`) instead of reading it again.
    """

    task_id: str
    status: TaskStatus
    total: int
    completed: int
    failures: list[Failure] = field(default_factory=list)
    error: str | None = None
    report: DispatchReport | None = None
    detail: TaskDetail | None = None

    @property
    def ok(self) -> bool:
        """True when the task completed."""
        return self.status is TaskStatus.COMPLETED


class JobRunner:
    """Submits, runs and resumes tasks against a store and a dispatcher."""

    def __init__(self, store: Store, settings: MasterSettings, *,
                 dispatcher: Dispatcher | None = None) -> None:
        self.store = store
        self.settings = settings
        self._own_dispatcher = dispatcher is None
        #: tasks with more subtasks than this run in windows of this many (bounded memory)
        self.window = WINDOW
        #: the object store for large outputs (``NADG_BLOBS``; None: results stay in rows)
        self.blobs = blob_store_from_env()
        self.blob_threshold = threshold_from_env()
        self.dispatcher = dispatcher or Dispatcher(settings, registry=store)

    async def aclose(self) -> None:
        """Close the dispatcher if this runner made it."""
        if self._own_dispatcher:
            await self.dispatcher.aclose()

    async def __aenter__(self) -> JobRunner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def live_workers(self) -> list[WorkerNode]:
        """The registry's live workers (:func:`master_app.service.workers.live_workers`)."""
        return live_workers(self.store)

    def create(self, command: str, plan: Plan, dataset: Dataset | None,
               workers: Sequence[WorkerNode] | None = None) -> TaskRecord:
        """Shard and persist the task with all its subtasks; returns its record."""
        return create_task(self.store, command, plan, dataset, workers)

    def submit(self, command: str, plan: Plan, dataset: Dataset | None,
               workers: Sequence[WorkerNode] | None = None) -> str:
        """Shard and persist the task with all its subtasks; returns the task id."""
        return self.create(command, plan, dataset, workers).id

    def _subtask(self, rec: SubtaskRecord) -> Subtask:
        return Subtask.model_validate({
            "id": rec.id, "task_id": rec.task_id, "kind": rec.kind,
            "payload": payload_of(rec.payload), "timeout_s": self.settings.subtask_timeout_s})

    async def run(self, task_id: str, on_event: EventCallback | None = None,
                  cancel: asyncio.Event | None = None,
                  deadline_s: float | None = None) -> TaskOutcome:
        """Dispatch every subtask of ``task_id`` without a completed result; wait for all.

        Reads the task from the store once; the outcome carries the finished detail. On a
        shared store the run holds the task's lease (:mod:`master_app.service.leases`): a
        task another live master runs is not run here (the outcome says so).
        """
        async with task_lease(self.store, task_id, self.settings.task_lease_s) as held:
            if not held:
                return await asyncio.to_thread(held_elsewhere, self.store, task_id)
            return await self._run(task_id, on_event, cancel, deadline_s)

    async def _run(self, task_id: str, on_event: EventCallback | None,
                   cancel: asyncio.Event | None, deadline_s: float | None) -> TaskOutcome:
        record = await asyncio.to_thread(self.store.get_task_record, task_id)
        if record.subtask_count > self.window and not record.status.finished:
            return await self._run_windowed(record, on_event, cancel, deadline_s)
        detail = await asyncio.to_thread(self.store.get_task, task_id)
        if detail.task.status.finished:
            return outcome_of(detail)
        await asyncio.to_thread(self.store.reset_unfinished_subtasks, task_id)
        await asyncio.to_thread(self.store.set_task_status, task_id, TaskStatus.RUNNING)
        detail = _after_reset(detail)
        todo = [self._subtask(s) for s in detail.subtasks
                if s.status is not SubtaskStatus.COMPLETED]
        workers = await asyncio.to_thread(self.live_workers)
        logger.info("task %s: dispatching %d of %d subtasks to %d workers", task_id,
                    len(todo), len(detail.subtasks), len(workers))
        sink = self._sink()
        # push workers over HTTP, pull workers through leases (master_app.service.pull)
        detail, report = await run_shared(
            self.store, self.dispatcher, detail, todo, workers, on_event=on_event,
            sink=sink, cancel=cancel, deadline_s=deadline_s)
        await sink.settle(task_id)
        return await self._finish(detail, report, sink)

    def _sink(self) -> StoreSink:
        return StoreSink(self.store, blobs=self.blobs, blob_threshold=self.blob_threshold)

    async def _run_windowed(self, record: TaskRecord, on_event: EventCallback | None,
                            cancel: asyncio.Event | None,
                            deadline_s: float | None) -> TaskOutcome:
        """A large task, never held whole (:mod:`master_app.service.windowed`); push
        workers only (the subtasks stay held by this master's lease)."""
        task_id = record.id
        await asyncio.to_thread(self.store.reset_unfinished_subtasks, task_id)
        await asyncio.to_thread(self.store.set_task_status, task_id, TaskStatus.RUNNING)
        workers = [w for w in await asyncio.to_thread(self.live_workers)
                   if not is_pull_url(w.vm_url)]
        return await run_windowed(self, record, workers, self._sink(), self._subtask,
                                  on_event=on_event, cancel=cancel, deadline_s=deadline_s,
                                  window=self.window)

    async def _finish(self, before: TaskDetail, report: DispatchReport,
                      sink: StoreSink) -> TaskOutcome:
        task_id = before.task.id
        await asyncio.to_thread(self._record_missed, before, report, sink)
        detail = _apply(before, report, sink)
        total = len(detail.subtasks)
        done = detail.count(SubtaskStatus.COMPLETED)
        summary: dict[str, Any] = {
            "total": total, "completed": done, "failed": total - done,
            "attempts": report.attempts, "retries": report.retries, "hedges": report.hedges,
            "duration_s": round(report.duration_s, 3)}
        error = None
        if done == total:
            status = TaskStatus.COMPLETED
        elif report.cancelled:
            status, error = TaskStatus.CANCELLED, "cancelled"
        else:
            status = TaskStatus.FAILED
            error = failure_message(detail)
        record = await asyncio.to_thread(self.store.set_task_status, task_id, status,
                                         result_summary=summary, error=error)
        if sink.refused:
            # The store kept another completed result for these subtasks (another master or
            # a pull worker got there first): hand on the store's results, not ours.
            logger.info("task %s: the store kept another result for %d subtask(s)", task_id,
                        len(sink.refused))
            detail = await asyncio.to_thread(self.store.get_task, task_id)
        else:
            detail = TaskDetail(task=record, subtasks=detail.subtasks)
        outcome = outcome_of(detail)
        outcome.report = report
        logger.info("task %s %s: %d/%d completed", task_id, status.value, done, total)
        return outcome

    def _record_missed(self, detail: TaskDetail, report: DispatchReport,
                       sink: StoreSink) -> None:
        """Record outcomes the sink could not write as they landed (a store error then).

        The report holds every result the dispatcher counted; one the store does not have
        would otherwise be lost for good once the task is marked finished. A store error
        here propagates, leaving the task unfinished so that a resume finishes it.
        """
        missed = 0
        for sub in detail.subtasks:
            if sub.status is SubtaskStatus.COMPLETED or sub.id in sink.written:
                continue
            result = report.results.get(sub.id)
            failure = report.failures.get(sub.id)
            if result is not None:
                first = self.store.record_result(sub.id, SubtaskStatus.COMPLETED,
                                                 result=result.model_dump(mode="json"),
                                                 worker_id=report.winners.get(sub.id))
                if not first:
                    sink.refused.add(sub.id)
            elif failure is not None:
                status = (SubtaskStatus.CANCELLED if failure.cancelled
                          else SubtaskStatus.FAILED)
                self.store.record_result(sub.id, status, error=failure.reason,
                                         worker_id=failure.worker_id)
            else:
                continue
            sink.written.add(sub.id)
            missed += 1
        if missed:
            logger.warning("task %s: recorded %d outcome(s) the store missed as they landed",
                           detail.task.id, missed)

    async def resume_unfinished(self, on_event: EventCallback | None = None,
                                cancel: asyncio.Event | None = None) -> list[TaskOutcome]:
        """Run every pending or running task again, oldest first (after a master restart).

        Raises :class:`NoLiveWorkers`, touching nothing, when there are unfinished tasks but
        no live worker to run them (they stay resumable). A task that cannot be resumed
        (its stored subtasks no longer validate, say) does not stop the others: its outcome
        keeps the task's stored status and says why in ``error``.
        """
        tasks = await asyncio.to_thread(self.store.list_unfinished_tasks)
        if tasks and not await asyncio.to_thread(self.live_workers):
            raise NoLiveWorkers(
                f"{len(tasks)} unfinished task(s) but no live worker to run them; start or "
                "register a worker (python -m database.manage_workers add URL), then resume")
        outcomes = []
        for task in tasks:
            logger.info("resuming task %s (%s)", task.id, task.command)
            try:
                outcomes.append(await self.run(task.id, on_event=on_event, cancel=cancel))
            except Exception as exc:
                logger.exception("could not resume task %s", task.id)
                outcomes.append(TaskOutcome(
                    task_id=task.id, status=task.status, total=task.subtask_count, completed=0,
                    error=f"could not resume: {type(exc).__name__}: {exc}"))
        return outcomes


def create_task(store: Store, command: str, plan: Plan, dataset: Dataset | None,
                workers: Sequence[WorkerNode] | None = None) -> TaskRecord:
    """Shard ``dataset`` by ``plan`` (over ``workers``, the live ones by default) and
    persist the task with all its subtasks in one transaction; returns its record."""
    workers = list(workers) if workers is not None else live_workers(store)
    shards = build_shards(plan, dataset, workers)
    record = store.create_task(command, plan.model_dump(mode="json"),
                               [shard.to_new_subtask(plan.operation) for shard in shards])
    logger.info("task %s: %d subtasks for %r", record.id, len(shards), command)
    return record


def _after_reset(detail: TaskDetail) -> TaskDetail:
    """``detail`` as ``reset_unfinished_subtasks`` left the store: running -> pending."""
    subs = [dataclasses.replace(s, status=SubtaskStatus.PENDING)
            if s.status is SubtaskStatus.RUNNING else s for s in detail.subtasks]
    return TaskDetail(task=detail.task, subtasks=subs)


def _apply(detail: TaskDetail, report: DispatchReport, sink: StoreSink) -> TaskDetail:
    """``detail`` with this run's attempts and outcomes, as the sink wrote them.

    Timestamps stay as read: the outcomes, not the store's clocks, are what is handed on.
    """
    subs: list[SubtaskRecord] = []
    for sub in detail.subtasks:
        if sub.status is SubtaskStatus.COMPLETED:
            subs.append(sub)
            continue
        attempts = sink.attempts.get(sub.id, sub.attempts)
        result = report.results.get(sub.id)
        failure = report.failures.get(sub.id)
        if result is not None:
            sub = dataclasses.replace(
                sub, status=SubtaskStatus.COMPLETED, attempts=attempts,
                result=result.model_dump(mode="json"), error=None,
                worker_id=report.winners.get(sub.id, sub.worker_id))
        elif failure is not None:
            sub = dataclasses.replace(
                sub, attempts=attempts, error=failure.reason,
                status=SubtaskStatus.CANCELLED if failure.cancelled else SubtaskStatus.FAILED,
                worker_id=failure.worker_id if failure.worker_id is not None
                else sub.worker_id)
        elif attempts != sub.attempts:
            sub = dataclasses.replace(sub, attempts=attempts, status=SubtaskStatus.RUNNING)
        subs.append(sub)
    return TaskDetail(task=detail.task, subtasks=subs)


def failure_message(detail: TaskDetail) -> str:
    """One line: how many subtasks failed and the first reasons."""
    failed = [s for s in detail.subtasks if s.status is not SubtaskStatus.COMPLETED]
    reasons = sorted({(s.error or s.status.value) for s in failed})
    head = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    return f"{len(failed)} of {len(detail.subtasks)} subtasks failed: {head}"


def outcome_of(detail: TaskDetail) -> TaskOutcome:
    """A :class:`TaskOutcome` of a task's detail (which it carries along)."""
    failures = [Failure(s.id, s.idx, s.error or s.status.value, s.attempts, s.worker_id,
                        s.status is SubtaskStatus.CANCELLED)
                for s in detail.subtasks if s.status is not SubtaskStatus.COMPLETED]
    return TaskOutcome(
        task_id=detail.task.id, status=detail.task.status, total=len(detail.subtasks),
        completed=detail.count(SubtaskStatus.COMPLETED), failures=failures,
        error=detail.task.error, detail=detail)


def held_elsewhere(store: Store, task_id: str) -> TaskOutcome:
    """The outcome of a run refused because another master holds the task's lease."""
    detail = store.get_task(task_id)
    outcome = outcome_of(detail)
    if not detail.task.status.finished:
        outcome.error = held_elsewhere_status(detail.task.status)
    return outcome
