"""Durable jobs: persist a task before dispatch, record each result as it lands, resume.

``submit`` writes the task and every subtask to the store before anything is sent;
``run`` dispatches only the subtasks that have no completed result yet, so calling it
again after a crash (``resume_unfinished``) finishes the task without losing a result or
counting one twice (the store keeps the first completed result of each subtask).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from database.models import (
    SubtaskRecord,
    SubtaskStatus,
    TaskDetail,
    TaskStatus,
    WorkerNode,
    WorkerStatus,
)
from database.store import Store
from master_app.dispatcher import Dispatcher, DispatchReport, Failure
from master_app.events import EventCallback
from master_app.intake import Dataset
from master_app.planning.plan import Plan
from master_app.settings import MasterSettings
from master_app.sharding import build_shards, payload_of
from worker_node.protocol import Subtask, SubtaskResult

logger = logging.getLogger(__name__)

LIVE = (WorkerStatus.ACTIVE, WorkerStatus.BUSY)


class NoLiveWorkers(RuntimeError):
    """There is work to resume but no live worker in the registry."""


@dataclass
class TaskOutcome:
    """How a task ended: its status, the counts, and exactly what failed."""

    task_id: str
    status: TaskStatus
    total: int
    completed: int
    failures: list[Failure] = field(default_factory=list)
    error: str | None = None
    report: DispatchReport | None = None

    @property
    def ok(self) -> bool:
        """True when the task completed."""
        return self.status is TaskStatus.COMPLETED


class StoreSink:
    """Persists attempts and outcomes as the dispatcher reports them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.recorded = 0

    async def attempt(self, subtask: Subtask, worker: WorkerNode) -> None:
        """Mark the subtask running on ``worker`` (attempts + 1)."""
        await asyncio.to_thread(self.store.record_attempt, subtask.id, worker.id)

    async def completed(self, subtask: Subtask, result: SubtaskResult,
                        worker: WorkerNode) -> None:
        """Record the result (the store ignores all but the first completed one)."""
        first = await asyncio.to_thread(
            self.store.record_result, subtask.id, SubtaskStatus.COMPLETED,
            result=result.model_dump(mode="json"), worker_id=worker.id)
        self.recorded += int(first)

    async def failed(self, subtask: Subtask, failure: Failure) -> None:
        """Record a final failure (or cancellation) with its reason."""
        status = SubtaskStatus.CANCELLED if failure.cancelled else SubtaskStatus.FAILED
        await asyncio.to_thread(self.store.record_result, subtask.id, status,
                                error=failure.reason, worker_id=failure.worker_id)


class JobRunner:
    """Submits, runs and resumes tasks against a store and a dispatcher."""

    def __init__(self, store: Store, settings: MasterSettings, *,
                 dispatcher: Dispatcher | None = None) -> None:
        self.store = store
        self.settings = settings
        self._own_dispatcher = dispatcher is None
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
        """Workers the registry says are active or busy."""
        return self.store.list_workers(LIVE)

    def submit(self, command: str, plan: Plan, dataset: Dataset | None,
               workers: Sequence[WorkerNode] | None = None) -> str:
        """Shard and persist the task with all its subtasks; returns the task id."""
        workers = list(workers) if workers is not None else self.live_workers()
        shards = build_shards(plan, dataset, workers)
        record = self.store.create_task(
            command, plan.model_dump(mode="json"),
            [shard.to_new_subtask(plan.operation) for shard in shards])
        logger.info("task %s: %d subtasks for %r", record.id, len(shards), command)
        return record.id

    def _subtask(self, rec: SubtaskRecord) -> Subtask:
        return Subtask.model_validate({
            "id": rec.id, "task_id": rec.task_id, "kind": rec.kind,
            "payload": payload_of(rec.payload), "timeout_s": self.settings.subtask_timeout_s})

    async def run(self, task_id: str, on_event: EventCallback | None = None,
                  cancel: asyncio.Event | None = None,
                  deadline_s: float | None = None) -> TaskOutcome:
        """Dispatch every subtask of ``task_id`` without a completed result; wait for all."""
        detail = await asyncio.to_thread(self.store.get_task, task_id)
        if detail.task.status.finished:
            return outcome_of(detail)
        await asyncio.to_thread(self.store.reset_unfinished_subtasks, task_id)
        await asyncio.to_thread(self.store.set_task_status, task_id, TaskStatus.RUNNING)
        todo = [self._subtask(s) for s in detail.subtasks
                if s.status is not SubtaskStatus.COMPLETED]
        workers = await asyncio.to_thread(self.live_workers)
        logger.info("task %s: dispatching %d of %d subtasks to %d workers", task_id,
                    len(todo), len(detail.subtasks), len(workers))
        report = await self.dispatcher.run_subtasks(
            todo, workers, on_event=on_event, sink=StoreSink(self.store), cancel=cancel,
            deadline_s=deadline_s)
        return await self._finish(task_id, report)

    async def _finish(self, task_id: str, report: DispatchReport) -> TaskOutcome:
        detail = await asyncio.to_thread(self.store.get_task, task_id)
        if await asyncio.to_thread(self._record_missed, detail, report):
            detail = await asyncio.to_thread(self.store.get_task, task_id)
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
        await asyncio.to_thread(self.store.set_task_status, task_id, status,
                                result_summary=summary, error=error)
        outcome = outcome_of(await asyncio.to_thread(self.store.get_task, task_id))
        outcome.report = report
        logger.info("task %s %s: %d/%d completed", task_id, status.value, done, total)
        return outcome

    def _record_missed(self, detail: TaskDetail, report: DispatchReport) -> bool:
        """Record outcomes the sink could not write as they landed (a store error then).

        The report holds every result the dispatcher counted; one the store does not have
        would otherwise be lost for good once the task is marked finished. A store error
        here propagates, leaving the task unfinished so that a resume finishes it.
        """
        missed = 0
        for sub in detail.subtasks:
            if sub.status is SubtaskStatus.COMPLETED:
                continue
            result = report.results.get(sub.id)
            failure = report.failures.get(sub.id)
            if result is not None:
                self.store.record_result(sub.id, SubtaskStatus.COMPLETED,
                                         result=result.model_dump(mode="json"),
                                         worker_id=report.winners.get(sub.id))
            elif failure is not None and sub.status in (SubtaskStatus.PENDING,
                                                        SubtaskStatus.RUNNING):
                status = (SubtaskStatus.CANCELLED if failure.cancelled
                          else SubtaskStatus.FAILED)
                self.store.record_result(sub.id, status, error=failure.reason,
                                         worker_id=failure.worker_id)
            else:
                continue
            missed += 1
        if missed:
            logger.warning("task %s: recorded %d outcome(s) the store missed as they landed",
                           detail.task.id, missed)
        return missed > 0

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


def failure_message(detail: TaskDetail) -> str:
    """One line: how many subtasks failed and the first reasons."""
    failed = [s for s in detail.subtasks if s.status is not SubtaskStatus.COMPLETED]
    reasons = sorted({(s.error or s.status.value) for s in failed})
    head = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    return f"{len(failed)} of {len(detail.subtasks)} subtasks failed: {head}"


def outcome_of(detail: TaskDetail) -> TaskOutcome:
    """A :class:`TaskOutcome` read back from the store."""
    failures = [Failure(s.id, s.idx, s.error or s.status.value, s.attempts, s.worker_id,
                        s.status is SubtaskStatus.CANCELLED)
                for s in detail.subtasks if s.status is not SubtaskStatus.COMPLETED]
    return TaskOutcome(
        task_id=detail.task.id, status=detail.task.status, total=len(detail.subtasks),
        completed=detail.count(SubtaskStatus.COMPLETED), failures=failures,
        error=detail.task.error)
