"""The orchestrator core as the pages use it: one seam between the UI and ``master_app``.

Pages import the intake, planning, sharding and job runner through here, so the UI
depends on one small surface (and the core's names are adapted in one place).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from database.models import NewSubtask, SubtaskStatus, TaskDetail
from database.store import Store
from master_app.aggregate import TaskResult, aggregate
from master_app.intake import DataError, Dataset, load_dataset
from master_app.planning import Plan, PlanError, choose_planner, parse_plan
from master_app.sharding import build_shards, shard_size_for
from worker_node.protocol import SubtaskKind

logger = logging.getLogger(__name__)

__all__ = [
    "TaskView",
    "task_view",
    "DataError",
    "PlanError",
    "choose_planner",
    "load_dataset",
    "parse_plan",
    "plannable_operations",
    "prepare_run",
    "rerun_task",
    "resume_run",
    "shards_editable",
    "suggested_shards",
]

_TEXT_KINDS = (SubtaskKind.CLASSIFY, SubtaskKind.EMBED, SubtaskKind.GENERATE)


def plannable_operations() -> list[str]:
    """Operations a plan may name (training has its own page)."""
    return [k.value for k in SubtaskKind if k is not SubtaskKind.TRAIN]


def shards_editable(plan: Plan) -> bool:
    """Whether the shard count is a free choice (text kinds) or follows the inputs."""
    return plan.operation in _TEXT_KINDS


def suggested_shards(plan: Plan, dataset: Dataset | None, store: Store) -> int:
    """How many subtasks the plan makes as it stands (the default of the shard editor)."""
    if plan.operation in _TEXT_KINDS and dataset is not None:
        size = shard_size_for(len(dataset), store.list_workers(), plan)
        return max(1, math.ceil(len(dataset) / size))
    try:
        return max(1, len(build_shards(plan, dataset, store.list_workers())))
    except (PlanError, DataError):
        return 1


def prepare_run(
    command: str, plan: Plan, dataset: Dataset | None, store: Store, settings: Any
) -> tuple[str, int, Callable[[Callable[[Any], None], Any], Awaitable[Any]]]:
    """Persist a task; returns its id, its subtask count and the coroutine that runs it.

    The coroutine factory is what :class:`~master_app.ui.run_state.BackgroundRun` calls in
    its own thread and event loop: ``factory(on_event, cancel_event)``.
    """
    from master_app.jobs import JobRunner

    runner = JobRunner(store, settings)
    task_id = runner.submit(command, plan, dataset)
    total = store.get_task(task_id).task.subtask_count
    return task_id, total, _runner_factory(runner, task_id)


def resume_run(
    task_id: str, store: Store, settings: Any
) -> tuple[str, int, Callable[[Callable[[Any], None], Any], Awaitable[Any]]]:
    """The same as :func:`prepare_run` for a task already in the store (resume)."""
    from master_app.jobs import JobRunner

    runner = JobRunner(store, settings)
    total = store.get_task(task_id).task.subtask_count
    return task_id, total, _runner_factory(runner, task_id)


def _runner_factory(
    runner: Any, task_id: str
) -> Callable[[Callable[[Any], None], Any], Awaitable[Any]]:
    async def run(on_event: Callable[[Any], None], cancel: Any) -> Any:
        try:
            return await runner.run(task_id, on_event=on_event, cancel=cancel)
        finally:
            await runner.aclose()  # its HTTP client belongs to this run's event loop

    return run


def rerun_task(
    task_id: str, store: Store, settings: Any
) -> tuple[str, int, Callable[[Callable[[Any], None], Any], Awaitable[Any]]]:
    """A new task with the same command, plan and subtask payloads as ``task_id``.

    The payloads carry the task's data, so a re-run needs no upload.
    """
    from master_app.jobs import JobRunner

    old = store.get_task(task_id)
    new = store.create_task(
        old.task.command,
        old.task.plan,
        [NewSubtask(idx=s.idx, kind=s.kind, payload=s.payload) for s in old.subtasks],
    )
    runner = JobRunner(store, settings)
    return new.id, len(old.subtasks), _runner_factory(runner, new.id)



@dataclass
class TaskView:
    """A task as the results view shows it: the record, its merged results and failures."""

    detail: TaskDetail
    result: TaskResult
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """How many subtasks the task has."""
        return len(self.detail.subtasks)

    @property
    def completed(self) -> int:
        """How many subtasks have a result."""
        return self.detail.count(SubtaskStatus.COMPLETED)


def task_view(task_id: str, store: Store) -> TaskView:
    """The merged results of a task (input order) and what failed, with attempts and worker."""
    detail = store.get_task(task_id)
    result = aggregate(detail)
    by_idx = {s.idx: s for s in detail.subtasks}
    failures = []
    for part in result.failures:
        sub = by_idx.get(part.idx)
        if sub is None or sub.status in (SubtaskStatus.PENDING, SubtaskStatus.RUNNING):
            continue  # not failed, just not finished yet
        failures.append({
            "subtask": part.idx, "status": str(sub.status), "rows": _span(part.rows),
            "attempts": sub.attempts, "last worker": sub.worker_id, "reason": part.reason,
        })
    return TaskView(detail=detail, result=result, failures=failures)


def _span(rows: tuple[int, ...]) -> str:
    if not rows:
        return ""
    return str(rows[0]) if len(rows) == 1 else f"{rows[0]}–{rows[-1]}"
