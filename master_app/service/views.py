"""A task as people look at it: its record, its merged results and what failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from database.models import SubtaskStatus, TaskDetail
from master_app.aggregate import TaskResult, aggregate


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


def view_of(detail: TaskDetail) -> TaskView:
    """The merged results of ``detail`` (input order) and what failed, with attempts and
    the last worker. Subtasks still pending or running are not failures (yet)."""
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
