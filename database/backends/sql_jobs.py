"""The job store in SQL: tasks and their subtasks, attempts and results."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from database.backends import rows
from database.backends.messages import no_subtask, no_task
from database.backends.sql_base import ForeignKeyViolation, SqlBase, UniqueViolation, in_list
from database.models import (
    NewSubtask,
    SubtaskRecord,
    SubtaskStatus,
    TaskDetail,
    TaskRecord,
    TaskStatus,
)
from database.store import StoreError, SubtaskNotFound, TaskNotFound

UNFINISHED_TASK = (TaskStatus.PENDING.value, TaskStatus.RUNNING.value)


class SqlJobs(SqlBase):
    """The JobStore methods of the Store, in SQL."""

    def create_task(
        self, command: str, plan: dict[str, Any], subtasks: Sequence[NewSubtask]
    ) -> TaskRecord:
        """Create a task and all its subtasks in one transaction (all or nothing)."""
        task_id = uuid.uuid4().hex
        now = self._now()
        try:
            with self._tx() as q:
                created = q.rows(
                    "INSERT INTO tasks (id, seq, command, plan, status, created_at, updated_at,"
                    f" subtask_count) VALUES (?, {self.task_seq_sql}, ?, ?, 'pending', ?, ?, ?)"
                    " RETURNING *",
                    (task_id, command, self._json(plan), now, now, len(subtasks)),
                )
                q.many(
                    "INSERT INTO subtasks (id, task_id, idx, kind, payload, status, attempts,"
                    " created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?)",
                    # a generator: a large task's rows are encoded as they are written
                    ((f"{task_id}:{s.idx}", task_id, s.idx, s.kind, self._json(s.payload), now)
                     for s in subtasks),
                )
        except (UniqueViolation, ForeignKeyViolation, TypeError, ValueError) as exc:
            raise StoreError(
                f"could not create the task, nothing was stored: {exc}; check that subtask"
                " indexes are unique and payloads are JSON"
            ) from exc
        return rows.task(created[0])

    def set_task_status(
        self,
        task_id: str,
        status: TaskStatus,
        *,
        result_summary: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> TaskRecord:
        """Move a task to ``status`` (sets started_at/finished_at); raises TaskNotFound."""
        status = TaskStatus(status)
        now = self._now()
        with self._tx() as q:
            found = q.rows(
                "UPDATE tasks SET status = ?, updated_at = ?,"
                " started_at = COALESCE(started_at, ?), finished_at = ?,"
                " result_summary = COALESCE(?, result_summary), error = COALESCE(?, error)"
                " WHERE id = ? RETURNING *",
                (status.value, now, None if status is TaskStatus.PENDING else now,
                 now if status.finished else None,
                 None if result_summary is None else self._json(result_summary),
                 error, task_id),
            )
        if not found:
            raise TaskNotFound(no_task(task_id))
        return rows.task(found[0])

    def record_attempt(self, subtask_id: str, worker_id: int | None) -> int:
        """Mark a subtask sent: running, attempts + 1 (completed ones keep their status)."""
        with self._tx() as q:
            found = q.rows(
                "UPDATE subtasks SET attempts = attempts + 1,"
                " worker_id = CASE WHEN status = 'completed' THEN worker_id ELSE ? END,"
                " started_at = CASE WHEN status = 'completed' THEN started_at ELSE ? END,"
                " status = CASE WHEN status = 'completed' THEN status ELSE 'running' END"
                " WHERE id = ? RETURNING attempts",
                (worker_id, self._now(), subtask_id),
            )
        if not found:
            raise SubtaskNotFound(no_subtask(subtask_id))
        return int(found[0]["attempts"])

    def record_result(
        self,
        subtask_id: str,
        status: SubtaskStatus,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        worker_id: int | None = None,
    ) -> bool:
        """Record an outcome; the first completed result wins (a conditional update)."""
        with self._tx() as q:
            changed = q.run(
                "UPDATE subtasks SET status = ?, result = ?, error = ?,"
                " worker_id = COALESCE(?, worker_id), finished_at = ?"
                " WHERE id = ? AND status <> 'completed'",
                (SubtaskStatus(status).value, None if result is None else self._json(result),
                 error, worker_id, self._now(), subtask_id),
            )
            if changed:
                return True
            if not q.rows("SELECT id FROM subtasks WHERE id = ?", (subtask_id,)):
                raise SubtaskNotFound(no_subtask(subtask_id))
        return False

    def reset_unfinished_subtasks(self, task_id: str) -> int:
        """Put a task's running subtasks back to pending; returns how many."""
        with self._tx() as q:
            return q.run(
                "UPDATE subtasks SET status = 'pending' WHERE task_id = ? AND status = 'running'",
                (task_id,),
            )

    def list_tasks(
        self, *, limit: int = 50, offset: int = 0, statuses: Iterable[TaskStatus] | None = None
    ) -> list[TaskRecord]:
        """Tasks, newest first."""
        with self._tx() as q:
            if statuses is None:
                found = q.rows("SELECT * FROM tasks ORDER BY seq DESC LIMIT ? OFFSET ?",
                               (limit, offset))
            else:
                wanted = [TaskStatus(s).value for s in statuses]
                if not wanted:
                    return []
                found = q.rows(
                    f"SELECT * FROM tasks WHERE status IN {in_list(wanted)}"
                    " ORDER BY seq DESC LIMIT ? OFFSET ?", [*wanted, limit, offset],
                )
        return [rows.task(r) for r in found]

    def get_task(self, task_id: str) -> TaskDetail:
        """A task with its subtasks ordered by idx; raises TaskNotFound."""
        with self._tx() as q:
            found = q.rows("SELECT * FROM tasks WHERE id = ?", (task_id,))
            if not found:
                raise TaskNotFound(no_task(task_id))
            subs = q.rows("SELECT * FROM subtasks WHERE task_id = ? ORDER BY idx", (task_id,))
        return TaskDetail(task=rows.task(found[0]), subtasks=[rows.subtask(r) for r in subs])

    def list_unfinished_tasks(self) -> list[TaskRecord]:
        """Tasks pending or running, oldest first."""
        with self._tx() as q:
            found = q.rows(
                f"SELECT * FROM tasks WHERE status IN {in_list(UNFINISHED_TASK)} ORDER BY seq",
                UNFINISHED_TASK,
            )
        return [rows.task(r) for r in found]

    def subtasks_by_status(
        self, task_id: str, statuses: Iterable[SubtaskStatus]
    ) -> list[SubtaskRecord]:
        """A task's subtasks in the given statuses, ordered by idx."""
        wanted = [SubtaskStatus(s).value for s in statuses]
        if not wanted:
            return []
        with self._tx() as q:
            found = q.rows(
                f"SELECT * FROM subtasks WHERE task_id = ? AND status IN {in_list(wanted)}"
                " ORDER BY idx", [task_id, *wanted],
            )
        return [rows.subtask(r) for r in found]
