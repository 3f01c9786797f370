"""The worker registry in SQL: registration, status, pings and dispatch counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from database.backends import rows
from database.backends.common import PING_RETENTION, norm_url
from database.backends.messages import duplicate_worker, no_worker
from database.backends.sql_base import Query, SqlBase, UniqueViolation, in_list
from database.models import CircuitState, PingRecord, WorkerNode, WorkerStatus, utcnow
from database.store import DuplicateWorker, WorkerNotFound, status_after_ping


class SqlWorkers(SqlBase):
    """The Registry methods of the Store, in SQL."""

    def _one_worker(self, q: Query, sql: str, params: Sequence[Any], worker_id: int) -> WorkerNode:
        found = q.rows(sql, params)
        if not found:
            raise WorkerNotFound(no_worker(worker_id))
        return rows.worker(found[0])

    def add_worker(
        self,
        vm_url: str,
        *,
        name: str | None = None,
        capabilities: Sequence[str] = (),
        max_concurrency: int = 4,
        status: WorkerStatus = WorkerStatus.ACTIVE,
    ) -> WorkerNode:
        """Register a new worker; raises DuplicateWorker if the URL is known."""
        url = norm_url(vm_url)
        try:
            with self._tx() as q:
                found = q.rows(
                    "INSERT INTO worker_nodes (vm_url, name, capabilities, max_concurrency,"
                    " status, total_tasks, consecutive_failures, circuit_state, created_at)"
                    " VALUES (?, ?, ?, ?, ?, 0, 0, 'closed', ?) RETURNING *",
                    (url, name, self._json(list(capabilities)), max_concurrency,
                     WorkerStatus(status).value, self._now()),
                )
        except UniqueViolation as exc:
            raise DuplicateWorker(duplicate_worker(url)) from exc
        return rows.worker(found[0])

    def register_worker(
        self,
        vm_url: str,
        *,
        name: str | None = None,
        capabilities: Sequence[str] = (),
        max_concurrency: int = 4,
        version: str | None = None,
    ) -> WorkerNode:
        """Insert or update by URL and mark active (also a worker that was draining: a
        worker marks itself draining on a graceful shutdown and re-registers on start)."""
        now = self._now()
        with self._tx() as q:
            found = q.rows(
                "INSERT INTO worker_nodes (vm_url, name, capabilities, max_concurrency, status,"
                " total_tasks, consecutive_failures, circuit_state, version, last_ping,"
                " created_at) VALUES (?, ?, ?, ?, 'active', 0, 0, 'closed', ?, ?, ?)"
                " ON CONFLICT (vm_url) DO UPDATE SET"
                " name = COALESCE(excluded.name, worker_nodes.name),"
                " capabilities = excluded.capabilities,"
                " max_concurrency = excluded.max_concurrency,"
                " version = excluded.version, last_ping = excluded.last_ping,"
                " consecutive_failures = 0, status = 'active'"
                " RETURNING *",
                (norm_url(vm_url), name, self._json(list(capabilities)), max_concurrency,
                 version, now, now),
            )
        return rows.worker(found[0])

    def get_worker(self, worker_id: int) -> WorkerNode:
        """One worker; raises WorkerNotFound."""
        with self._tx() as q:
            return self._one_worker(q, "SELECT * FROM worker_nodes WHERE id = ?",
                                    (worker_id,), worker_id)

    def find_worker(self, vm_url: str) -> WorkerNode | None:
        """The worker registered under ``vm_url``, if any."""
        with self._tx() as q:
            found = q.rows("SELECT * FROM worker_nodes WHERE vm_url = ?", (norm_url(vm_url),))
        return rows.worker(found[0]) if found else None

    def list_workers(self, statuses: Iterable[WorkerStatus] | None = None) -> list[WorkerNode]:
        """All workers (or those in ``statuses``), ordered by id."""
        with self._tx() as q:
            if statuses is None:
                found = q.rows("SELECT * FROM worker_nodes ORDER BY id")
            else:
                wanted = [WorkerStatus(s).value for s in statuses]
                if not wanted:
                    return []
                found = q.rows(
                    f"SELECT * FROM worker_nodes WHERE status IN {in_list(wanted)} ORDER BY id",
                    wanted,
                )
        return [rows.worker(r) for r in found]

    def set_worker_status(self, worker_id: int, status: WorkerStatus) -> WorkerNode:
        """Set a worker's status by hand; raises WorkerNotFound."""
        with self._tx() as q:
            return self._one_worker(
                q, "UPDATE worker_nodes SET status = ? WHERE id = ? RETURNING *",
                (WorkerStatus(status).value, worker_id), worker_id,
            )

    def record_ping(
        self,
        worker_id: int,
        *,
        ok: bool,
        latency_ms: float | None = None,
        version: str | None = None,
        error: str | None = None,
    ) -> WorkerNode:
        """Record one health ping and apply the liveness rule atomically."""
        now = utcnow()
        with self._tx() as q:
            current = self._one_worker(
                q, "SELECT * FROM worker_nodes WHERE id = ?" + self.for_update,
                (worker_id,), worker_id,
            )
            failures = 0 if ok else current.consecutive_failures + 1
            status = status_after_ping(current.status, ok, failures)
            if ok:
                updated = q.rows(
                    "UPDATE worker_nodes SET status = ?, consecutive_failures = 0,"
                    " last_ping = ?, last_latency_ms = ?, version = COALESCE(?, version)"
                    " WHERE id = ? RETURNING *",
                    (status.value, self._time(now), latency_ms, version, worker_id),
                )
            else:
                updated = q.rows(
                    "UPDATE worker_nodes SET status = ?, consecutive_failures = ?"
                    " WHERE id = ? RETURNING *",
                    (status.value, failures, worker_id),
                )
            q.run(
                "INSERT INTO worker_pings (worker_id, at, ok, latency_ms, error)"
                " VALUES (?, ?, ?, ?, ?)",
                (worker_id, self._time(now), ok, latency_ms, error),
            )
            q.run("DELETE FROM worker_pings WHERE worker_id = ? AND at < ?",
                  (worker_id, self._time(now - PING_RETENTION)))
        return rows.worker(updated[0])

    def recent_pings(self, worker_id: int, limit: int = 50) -> list[PingRecord]:
        """The latest pings of a worker, newest first."""
        with self._tx() as q:
            found = q.rows(
                "SELECT * FROM worker_pings WHERE worker_id = ? ORDER BY at DESC, id DESC"
                " LIMIT ?", (worker_id, limit),
            )
        return [rows.ping(r) for r in found]

    def record_dispatch(self, worker_id: int, *, ok: bool, latency_ms: float | None = None) -> None:
        """Count one subtask outcome on a worker (``total_tasks`` grows on success)."""
        with self._tx() as q:
            changed = q.run(
                "UPDATE worker_nodes SET total_tasks = total_tasks + ?,"
                " last_latency_ms = COALESCE(?, last_latency_ms) WHERE id = ?",
                (1 if ok else 0, latency_ms, worker_id),
            )
        if not changed:
            raise WorkerNotFound(no_worker(worker_id))

    def set_circuit_state(self, worker_id: int, state: CircuitState) -> None:
        """Mirror the master's circuit breaker state for a worker."""
        with self._tx() as q:
            changed = q.run("UPDATE worker_nodes SET circuit_state = ? WHERE id = ?",
                            (CircuitState(state).value, worker_id))
        if not changed:
            raise WorkerNotFound(no_worker(worker_id))

    def remove_worker(self, worker_id: int) -> None:
        """Delete a worker (its pings and deployments go with it); raises WorkerNotFound."""
        with self._tx() as q:
            changed = q.run("DELETE FROM worker_nodes WHERE id = ?", (worker_id,))
        if not changed:
            raise WorkerNotFound(no_worker(worker_id))
