"""The job store's batch methods on Supabase: one set-based RPC per batch (the
``nadg_write_batch``, ``nadg_cancel_unfinished``, ``nadg_subtask_counts`` and
``nadg_record_dispatches`` functions of ``database/schema.sql``), never a
compare-and-swap loop per row."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from database.backends import rows
from database.backends.batching import plan_attempts, plan_outcomes, written
from database.backends.common import dumps
from database.backends.messages import no_task, no_worker
from database.backends.supabase_base import ApiFailure, SupabaseBase, iso
from database.models import SubtaskRecord, SubtaskStatus, TaskRecord, utcnow
from database.store import (
    AttemptWrite,
    BatchWritten,
    OutcomeWrite,
    StoreError,
    SubtaskNotFound,
    TaskNotFound,
    WorkerNotFound,
)

#: The SQLSTATE nadg_write_batch raises for an unknown subtask id.
NO_SUBTASK = "P0002"


class SupabaseBatch(SupabaseBase):
    """``write_batch``, ``cancel_unfinished_subtasks``, windows and counts, by RPC."""

    def _rpc(self, fn: str, params: dict[str, Any]) -> Any:
        return self._call(lambda: self._client.rpc(fn, params).execute()).data

    def write_batch(
        self, attempts: Sequence[AttemptWrite], outcomes: Sequence[OutcomeWrite]
    ) -> BatchWritten:
        """Record attempts, then outcomes: one ``nadg_write_batch`` call, one transaction."""
        if not attempts and not outcomes:
            return BatchWritten()
        planned = plan_outcomes(outcomes)
        try:
            for o in planned:
                dumps(o.result)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"a result is not JSON, nothing in this batch was written: {exc}"
                             ) from exc
        params = {
            "p_attempts": [{"id": a.subtask_id, "n": a.n, "worker_id": a.worker_id}
                           for a in plan_attempts(attempts)],
            "p_outcomes": [{"id": o.subtask_id, "status": SubtaskStatus(o.status).value,
                            "result": o.result, "error": o.error, "worker_id": o.worker_id}
                           for o in planned],
            "p_now": iso(utcnow()),
        }
        try:
            data = self._rpc("nadg_write_batch", params)
        except ApiFailure as exc:
            if exc.code == NO_SUBTASK:
                raise SubtaskNotFound(f"{exc.message}; nothing in this batch was written"
                                      ) from exc
            raise StoreError(f"could not write the batch, nothing was written: {exc.message}"
                             ) from exc
        final = {str(k): int(v) for k, v in (data.get("attempts") or {}).items()}
        opened = {str(i) for i in data.get("opened") or []}
        return written(attempts, final, outcomes, opened)

    def cancel_unfinished_subtasks(self, task_id: str, reason: str = "cancelled") -> int:
        """Cancel every pending or running subtask of a task: one RPC, one statement."""
        data = self._rpc("nadg_cancel_unfinished",
                         {"p_task_id": task_id, "p_reason": reason, "p_now": iso(utcnow())})
        return int(data or 0)

    def subtask_window(
        self,
        task_id: str,
        *,
        after_idx: int = -1,
        limit: int = 1000,
        statuses: Iterable[SubtaskStatus] | None = None,
    ) -> list[SubtaskRecord]:
        """At most ``limit`` subtasks with ``idx > after_idx``, ordered by idx (paged)."""
        wanted = None if statuses is None else [SubtaskStatus(s).value for s in statuses]
        if wanted == [] or limit <= 0:
            return []

        def build() -> Any:
            q = self._t("subtasks").select("*").eq("task_id", task_id).gt("idx", after_idx)
            return (q if wanted is None else q.in_("status", wanted)).order("idx")

        return [rows.subtask(r) for r in self._all(build, limit=limit)]

    def get_task_record(self, task_id: str) -> TaskRecord:
        """A task's row alone; raises TaskNotFound."""
        found = self._data(lambda: self._t("tasks").select("*").eq("id", task_id).execute())
        if not found:
            raise TaskNotFound(no_task(task_id))
        return rows.task(found[0])

    def subtask_counts(self, task_id: str) -> dict[SubtaskStatus, int]:
        """Subtasks per status: one ``nadg_subtask_counts`` call; raises TaskNotFound."""
        if not self._data(lambda: self._t("tasks").select("id").eq("id", task_id).execute()):
            raise TaskNotFound(no_task(task_id))
        data = self._rpc("nadg_subtask_counts", {"p_task_id": task_id}) or {}
        return {SubtaskStatus(k): int(v) for k, v in data.items()}

    def subtask_counts_by_worker(self, task_id: str) -> dict[int | None, dict[SubtaskStatus, int]]:
        """Subtasks per worker and status: one ``nadg_subtask_counts_by_worker`` call."""
        if not self._data(lambda: self._t("tasks").select("id").eq("id", task_id).execute()):
            raise TaskNotFound(no_task(task_id))
        data = self._rpc("nadg_subtask_counts_by_worker", {"p_task_id": task_id}) or []
        out: dict[int | None, dict[SubtaskStatus, int]] = {}
        for r in data:
            wid = None if r.get("worker_id") is None else int(r["worker_id"])
            out.setdefault(wid, {})[SubtaskStatus(r["status"])] = int(r["n"])
        return out

    def record_dispatches(self, worker_id: int, *, ok: int, failed: int = 0,
                          latency_ms: float | None = None) -> None:
        """Count many outcomes on a worker: one ``nadg_record_dispatches`` call."""
        changed = self._rpc("nadg_record_dispatches", {
            "p_worker_id": worker_id, "p_ok": max(0, ok), "p_latency_ms": latency_ms})
        if not changed:
            raise WorkerNotFound(no_worker(worker_id))
