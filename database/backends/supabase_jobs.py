"""The job store on Supabase: tasks and their subtasks, attempts and results."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from database.backends import rows
from database.backends.common import dumps
from database.backends.messages import no_subtask, no_task
from database.backends.supabase_base import ApiFailure, Row, SupabaseBase, iso
from database.models import (
    NewSubtask,
    SubtaskRecord,
    SubtaskStatus,
    TaskDetail,
    TaskRecord,
    TaskStatus,
    utcnow,
)
from database.store import StoreError, SubtaskNotFound, TaskNotFound


class SupabaseJobs(SupabaseBase):
    """The JobStore methods of the Store, through PostgREST."""

    def _task_row(self, task_id: str) -> Row:
        found = self._data(lambda: self._t("tasks").select("*").eq("id", task_id).execute())
        if not found:
            raise TaskNotFound(no_task(task_id))
        return found[0]

    def _subtask_row(self, subtask_id: str) -> Row:
        found = self._data(lambda: self._t("subtasks").select("*").eq("id", subtask_id)
                           .execute())
        if not found:
            raise SubtaskNotFound(no_subtask(subtask_id))
        return found[0]

    def create_task(
        self, command: str, plan: dict[str, Any], subtasks: Sequence[NewSubtask]
    ) -> TaskRecord:
        """Create a task and its subtasks in one transaction (the nadg_create_task RPC)."""
        try:
            dumps(plan)
            for s in subtasks:
                dumps(s.payload)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"could not create the task, nothing was stored: {exc}; plans and"
                             " payloads must be JSON") from exc
        params = {"p_id": uuid.uuid4().hex, "p_command": command, "p_plan": plan,
                  "p_subtasks": [{"idx": s.idx, "kind": s.kind, "payload": s.payload}
                                 for s in subtasks],
                  "p_now": iso(utcnow())}
        try:
            found = self._data(lambda: self._client.rpc("nadg_create_task", params).execute())
        except ApiFailure as exc:
            raise StoreError(
                f"could not create the task, nothing was stored: {exc.message}; check that"
                " subtask indexes are unique") from exc
        return rows.task(found[0])

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
        now = iso(utcnow())
        current = self._task_row(task_id)
        values: dict[str, Any] = {"status": status.value, "updated_at": now,
                                  "finished_at": now if status.finished else None}
        if status is not TaskStatus.PENDING and current.get("started_at") is None:
            values["started_at"] = now
        if result_summary is not None:
            values["result_summary"] = result_summary
        if error is not None:
            values["error"] = error
        found = self._data(lambda: self._t("tasks").update(values).eq("id", task_id).execute())
        if not found:
            raise TaskNotFound(no_task(task_id))
        return rows.task(found[0])

    def record_attempt(self, subtask_id: str, worker_id: int | None) -> int:
        """Mark a subtask sent: running, attempts + 1 (completed ones keep their status)."""
        now = iso(utcnow())

        def change(row: Row) -> tuple[Row, dict[str, Any]]:
            values: dict[str, Any] = {"attempts": int(row["attempts"]) + 1}
            if row["status"] != SubtaskStatus.COMPLETED.value:
                values.update(status="running", worker_id=worker_id, started_at=now)
            return values, {"attempts": row["attempts"], "status": row["status"]}

        updated = self._cas("subtasks", "id", subtask_id,
                            lambda: self._subtask_row(subtask_id), change)
        return int(updated["attempts"])

    def record_result(
        self,
        subtask_id: str,
        status: SubtaskStatus,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        worker_id: int | None = None,
    ) -> bool:
        """Record an outcome; the first completed result wins (one conditional update)."""
        values: dict[str, Any] = {"status": SubtaskStatus(status).value, "result": result,
                                  "error": error, "finished_at": iso(utcnow())}
        if worker_id is not None:
            values["worker_id"] = worker_id
        changed = self._data(lambda: self._t("subtasks").update(values).eq("id", subtask_id)
                             .neq("status", SubtaskStatus.COMPLETED.value).execute())
        if changed:
            return True
        self._subtask_row(subtask_id)  # raises SubtaskNotFound
        return False

    def reset_unfinished_subtasks(self, task_id: str) -> int:
        """Put a task's running subtasks back to pending; returns how many."""
        changed = self._data(lambda: self._t("subtasks").update({"status": "pending"})
                             .eq("task_id", task_id).eq("status", "running").execute())
        return len(changed)

    def list_tasks(
        self, *, limit: int = 50, offset: int = 0, statuses: Iterable[TaskStatus] | None = None
    ) -> list[TaskRecord]:
        """Tasks, newest first (paginated past PostgREST's 1,000-row cap)."""
        wanted = None if statuses is None else [TaskStatus(s).value for s in statuses]
        if wanted == [] or limit <= 0:
            return []

        def build() -> Any:
            q = self._t("tasks").select("*")
            return (q if wanted is None else q.in_("status", wanted)).order("seq", desc=True)

        return [rows.task(r) for r in self._all(build, start=offset, limit=limit)]

    def get_task(self, task_id: str) -> TaskDetail:
        """A task with its subtasks ordered by idx; raises TaskNotFound."""
        task = rows.task(self._task_row(task_id))
        subs = self._all(lambda: self._t("subtasks").select("*").eq("task_id", task_id)
                         .order("idx"))
        return TaskDetail(task=task, subtasks=[rows.subtask(r) for r in subs])

    def list_unfinished_tasks(self) -> list[TaskRecord]:
        """Tasks pending or running, oldest first."""
        found = self._all(lambda: self._t("tasks").select("*")
                          .in_("status", ["pending", "running"]).order("seq"))
        return [rows.task(r) for r in found]

    def subtasks_by_status(
        self, task_id: str, statuses: Iterable[SubtaskStatus]
    ) -> list[SubtaskRecord]:
        """A task's subtasks in the given statuses, ordered by idx."""
        wanted = [SubtaskStatus(s).value for s in statuses]
        if not wanted:
            return []
        found = self._all(lambda: self._t("subtasks").select("*").eq("task_id", task_id)
                          .in_("status", wanted).order("idx"))
        return [rows.subtask(r) for r in found]
