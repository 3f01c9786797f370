"""The registry and job store interface; every backend implements :class:`Store`.

Exceptions::

    StoreError                 anything the store could not do
    ├── StoreUnavailable       the backend cannot be reached or is misconfigured
    ├── WorkerNotFound         no worker with that id
    ├── DuplicateWorker        a worker with that URL is registered already
    ├── TaskNotFound           no task with that id
    └── SubtaskNotFound        no subtask with that id

All methods are synchronous (the three client libraries are); async callers run them in a
thread with ``asyncio.to_thread``. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from database.models import (
    CircuitState,
    DeploymentRecord,
    ModelRecord,
    NewSubtask,
    PingRecord,
    SubtaskRecord,
    SubtaskStatus,
    TaskDetail,
    TaskRecord,
    TaskStatus,
    WorkerNode,
    WorkerStatus,
)

#: A worker is marked offline after this many consecutive failed pings.
OFFLINE_AFTER_FAILURES = 2


class StoreError(Exception):
    """Base of every store error; the message says what was wrong and what to do."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached or is misconfigured (names the variable to fix)."""


class WorkerNotFound(StoreError):
    """No worker with the given id."""


class DuplicateWorker(StoreError):
    """A worker with the given URL is already registered."""


class TaskNotFound(StoreError):
    """No task with the given id."""


class SubtaskNotFound(StoreError):
    """No subtask with the given id."""


def status_after_ping(current: WorkerStatus, ok: bool, consecutive_failures: int) -> WorkerStatus:
    """The liveness rule, in one place for every backend.

    ``consecutive_failures`` is the count *after* this ping. A draining worker stays
    draining whatever the ping says (only an operator re-activates it); otherwise one good
    ping makes a worker active and ``OFFLINE_AFTER_FAILURES`` bad ones make it offline.
    A busy worker that answers stays busy.
    """
    if current is WorkerStatus.DRAINING:
        return current
    if ok:
        return WorkerStatus.BUSY if current is WorkerStatus.BUSY else WorkerStatus.ACTIVE
    if consecutive_failures >= OFFLINE_AFTER_FAILURES:
        return WorkerStatus.OFFLINE
    return current


@runtime_checkable
class Registry(Protocol):
    """Which workers exist, how to reach them and whether they are alive."""

    backend_name: str

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
        ...

    def register_worker(
        self,
        vm_url: str,
        *,
        name: str | None = None,
        capabilities: Sequence[str] = (),
        max_concurrency: int = 4,
        version: str | None = None,
    ) -> WorkerNode:
        """Self-registration: insert or update by URL, mark active, set ``last_ping``."""
        ...

    def get_worker(self, worker_id: int) -> WorkerNode:
        """One worker; raises WorkerNotFound."""
        ...

    def find_worker(self, vm_url: str) -> WorkerNode | None:
        """The worker registered under ``vm_url``, if any."""
        ...

    def list_workers(self, statuses: Iterable[WorkerStatus] | None = None) -> list[WorkerNode]:
        """All workers (or those in ``statuses``), ordered by id."""
        ...

    def set_worker_status(self, worker_id: int, status: WorkerStatus) -> WorkerNode:
        """Set a worker's status by hand; raises WorkerNotFound."""
        ...

    def record_ping(
        self,
        worker_id: int,
        *,
        ok: bool,
        latency_ms: float | None = None,
        version: str | None = None,
        error: str | None = None,
    ) -> WorkerNode:
        """Record one health ping and apply :func:`status_after_ping`.

        A good ping sets ``last_ping``, ``last_latency_ms`` and resets
        ``consecutive_failures``; a bad one increments it. Appends to the ping history.
        """
        ...

    def recent_pings(self, worker_id: int, limit: int = 50) -> list[PingRecord]:
        """The latest pings of a worker, newest first."""
        ...

    def record_dispatch(self, worker_id: int, *, ok: bool, latency_ms: float | None = None) -> None:
        """Count one subtask outcome on a worker (``total_tasks`` grows on success)."""
        ...

    def set_circuit_state(self, worker_id: int, state: CircuitState) -> None:
        """Mirror the master's circuit breaker state for a worker."""
        ...

    def remove_worker(self, worker_id: int) -> None:
        """Delete a worker; raises WorkerNotFound."""
        ...


@runtime_checkable
class JobStore(Protocol):
    """Every task and subtask, so nothing is lost when the master stops."""

    def create_task(
        self, command: str, plan: dict[str, Any], subtasks: Sequence[NewSubtask]
    ) -> TaskRecord:
        """Create a task (status pending) and all its subtasks in one transaction.

        Subtask ids are ``f"{task_id}:{idx}"``.
        """
        ...

    def set_task_status(
        self,
        task_id: str,
        status: TaskStatus,
        *,
        result_summary: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> TaskRecord:
        """Move a task to ``status`` (sets started_at/finished_at); raises TaskNotFound."""
        ...

    def record_attempt(self, subtask_id: str, worker_id: int | None) -> int:
        """A subtask was sent to a worker: status running, attempts + 1; returns attempts.

        A subtask already completed keeps its status (a hedged copy may still be sent).
        """
        ...

    def record_result(
        self,
        subtask_id: str,
        status: SubtaskStatus,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        worker_id: int | None = None,
    ) -> bool:
        """Record a subtask's outcome exactly once.

        The first *completed* result wins: once a subtask is completed, every later call
        is ignored and returns False. A failed/cancelled outcome can be overwritten by a
        later completed one (a retry that succeeded). Returns True when recorded.
        """
        ...

    def reset_unfinished_subtasks(self, task_id: str) -> int:
        """Put a task's running subtasks back to pending (on resume); returns how many."""
        ...

    def list_tasks(
        self, *, limit: int = 50, offset: int = 0, statuses: Iterable[TaskStatus] | None = None
    ) -> list[TaskRecord]:
        """Tasks, newest first."""
        ...

    def get_task(self, task_id: str) -> TaskDetail:
        """A task with its subtasks ordered by idx; raises TaskNotFound."""
        ...

    def list_unfinished_tasks(self) -> list[TaskRecord]:
        """Tasks pending or running, oldest first: what a restarted master resumes."""
        ...

    def subtasks_by_status(
        self, task_id: str, statuses: Iterable[SubtaskStatus]
    ) -> list[SubtaskRecord]:
        """A task's subtasks in the given statuses, ordered by idx."""
        ...


@runtime_checkable
class ModelStore(Protocol):
    """Trained heads and adapters, and which worker has which."""

    def add_model(self, model: ModelRecord) -> ModelRecord:
        """Insert a model record (id chosen by the caller)."""
        ...

    def get_model(self, model_id: str) -> ModelRecord | None:
        """One model, if known."""
        ...

    def list_models(self) -> list[ModelRecord]:
        """All models, newest first."""
        ...

    def record_deployment(self, model_id: str, worker_id: int) -> DeploymentRecord:
        """Record (or refresh) that ``worker_id`` has ``model_id``."""
        ...

    def list_deployments(self, model_id: str | None = None) -> list[DeploymentRecord]:
        """Deployments, of one model or all."""
        ...


@runtime_checkable
class Store(Registry, JobStore, ModelStore, Protocol):
    """The whole store: registry, jobs and models. ``close()`` releases connections."""

    def close(self) -> None:
        """Release connections and pools."""
        ...


__all__ = [
    "OFFLINE_AFTER_FAILURES",
    "DuplicateWorker",
    "JobStore",
    "ModelStore",
    "Registry",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SubtaskNotFound",
    "TaskNotFound",
    "WorkerNotFound",
    "status_after_ping",
    "SubtaskRecord",
]
