"""The worker registry on Supabase: registration, status, pings and dispatch counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from database.backends import rows
from database.backends.common import PING_RETENTION, norm_url
from database.backends.messages import duplicate_worker, no_worker
from database.backends.supabase_base import ApiFailure, Row, SupabaseBase, iso
from database.models import CircuitState, PingRecord, WorkerNode, WorkerStatus, utcnow
from database.store import DuplicateWorker, StoreError, WorkerNotFound, status_after_ping


class SupabaseWorkers(SupabaseBase):
    """The Registry methods of the Store, through PostgREST."""

    def _worker_row(self, worker_id: int) -> Row:
        found = self._data(lambda: self._t("worker_nodes").select("*").eq("id", worker_id)
                           .execute())
        if not found:
            raise WorkerNotFound(no_worker(worker_id))
        return found[0]

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
        row = {"vm_url": url, "name": name, "capabilities": list(capabilities),
               "max_concurrency": max_concurrency, "status": WorkerStatus(status).value,
               "total_tasks": 0, "consecutive_failures": 0, "circuit_state": "closed",
               "created_at": iso(utcnow())}
        try:
            found = self._data(lambda: self._t("worker_nodes").insert(row).execute())
        except ApiFailure as exc:
            if exc.code == "23505":
                raise DuplicateWorker(duplicate_worker(url)) from exc
            raise
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
        """Insert or update by URL and mark active (also a worker that was draining)."""
        url = norm_url(vm_url)
        now = iso(utcnow())
        for _ in range(3):
            existing = self.find_worker(url)
            if existing is None:
                try:
                    found = self._data(lambda: self._t("worker_nodes").insert({
                        "vm_url": url, "name": name, "capabilities": list(capabilities),
                        "max_concurrency": max_concurrency, "status": "active",
                        "total_tasks": 0, "consecutive_failures": 0,
                        "circuit_state": "closed", "version": version, "last_ping": now,
                        "created_at": now}).execute())
                    return rows.worker(found[0])
                except ApiFailure as exc:
                    if exc.code == "23505":
                        continue  # registered meanwhile: update it instead
                    raise
            values = {"capabilities": list(capabilities), "max_concurrency": max_concurrency,
                      "version": version, "last_ping": now, "consecutive_failures": 0,
                      "status": WorkerStatus.ACTIVE.value}
            if name is not None:
                values["name"] = name
            found = self._data(self._t("worker_nodes").update(values).eq("id", existing.id)
                               .execute)
            if found:
                return rows.worker(found[0])
        raise StoreError(f"could not register {url}: it kept changing; try again")

    def get_worker(self, worker_id: int) -> WorkerNode:
        """One worker; raises WorkerNotFound."""
        return rows.worker(self._worker_row(worker_id))

    def find_worker(self, vm_url: str) -> WorkerNode | None:
        """The worker registered under ``vm_url``, if any."""
        found = self._data(lambda: self._t("worker_nodes").select("*")
                           .eq("vm_url", norm_url(vm_url)).execute())
        return rows.worker(found[0]) if found else None

    def list_workers(self, statuses: Iterable[WorkerStatus] | None = None) -> list[WorkerNode]:
        """All workers (or those in ``statuses``), ordered by id."""
        wanted = None if statuses is None else [WorkerStatus(s).value for s in statuses]
        if wanted == []:
            return []

        def build() -> Any:
            q = self._t("worker_nodes").select("*")
            return (q if wanted is None else q.in_("status", wanted)).order("id")

        return [rows.worker(r) for r in self._all(build)]

    def set_worker_status(self, worker_id: int, status: WorkerStatus) -> WorkerNode:
        """Set a worker's status by hand; raises WorkerNotFound."""
        found = self._data(lambda: self._t("worker_nodes")
                           .update({"status": WorkerStatus(status).value})
                           .eq("id", worker_id).execute())
        if not found:
            raise WorkerNotFound(no_worker(worker_id))
        return rows.worker(found[0])

    def record_ping(
        self,
        worker_id: int,
        *,
        ok: bool,
        latency_ms: float | None = None,
        version: str | None = None,
        error: str | None = None,
    ) -> WorkerNode:
        """Record one health ping; the status change is a compare-and-swap update."""
        now = utcnow()

        def change(row: Row) -> tuple[Row, dict[str, Any]]:
            current = rows.worker(row)
            failures = 0 if ok else current.consecutive_failures + 1
            values: dict[str, Any] = {
                "status": status_after_ping(current.status, ok, failures).value,
                "consecutive_failures": failures}
            if ok:
                values.update(last_ping=iso(now), last_latency_ms=latency_ms)
                if version is not None:
                    values["version"] = version
            guard = {"status": row["status"],
                     "consecutive_failures": row.get("consecutive_failures")}
            return values, guard

        updated = self._cas("worker_nodes", "id", worker_id,
                            lambda: self._worker_row(worker_id), change)
        self._call(lambda: self._t("worker_pings").insert(
            {"worker_id": worker_id, "at": iso(now), "ok": ok, "latency_ms": latency_ms,
             "error": error}, returning="minimal").execute())
        self._call(lambda: self._t("worker_pings").delete(returning="minimal")
                   .eq("worker_id", worker_id).lt("at", iso(now - PING_RETENTION)).execute())
        return rows.worker(updated)

    def recent_pings(self, worker_id: int, limit: int = 50) -> list[PingRecord]:
        """The latest pings of a worker, newest first."""
        found = self._all(lambda: self._t("worker_pings").select("*").eq("worker_id", worker_id)
                          .order("at", desc=True).order("id", desc=True), limit=limit)
        return [rows.ping(r) for r in found]

    def record_dispatch(self, worker_id: int, *, ok: bool, latency_ms: float | None = None) -> None:
        """Count one subtask outcome on a worker (``total_tasks`` grows on success)."""

        def change(row: Row) -> tuple[Row, dict[str, Any]]:
            values: dict[str, Any] = {"total_tasks": int(row.get("total_tasks") or 0)
                                      + (1 if ok else 0)}
            if latency_ms is not None:
                values["last_latency_ms"] = latency_ms
            return values, {"total_tasks": row.get("total_tasks")}

        self._cas("worker_nodes", "id", worker_id, lambda: self._worker_row(worker_id), change)

    def set_circuit_state(self, worker_id: int, state: CircuitState) -> None:
        """Mirror the master's circuit breaker state for a worker."""
        found = self._data(lambda: self._t("worker_nodes")
                           .update({"circuit_state": CircuitState(state).value})
                           .eq("id", worker_id).execute())
        if not found:
            raise WorkerNotFound(no_worker(worker_id))

    def remove_worker(self, worker_id: int) -> None:
        """Delete a worker (its pings and deployments go with it); raises WorkerNotFound."""
        found = self._data(lambda: self._t("worker_nodes").delete().eq("id", worker_id)
                           .execute())
        if not found:
            raise WorkerNotFound(no_worker(worker_id))
