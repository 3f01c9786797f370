"""The registry and job store interface; every backend implements :class:`Store`.

Exceptions::

    StoreError                 anything the store could not do
    ├── StoreUnavailable       the backend cannot be reached or is misconfigured
    │   ├── StoreConfigError   the settings are incomplete (e.g. SUPABASE_URL without its key)
    │   └── SchemaOutdated     the database lacks tables or columns: apply database/schema.sql
    ├── WorkerNotFound         no worker with that id
    ├── DuplicateWorker        a worker with that URL is registered already
    ├── TaskNotFound           no task with that id
    └── SubtaskNotFound        no subtask with that id

All methods are synchronous (the three client libraries are); async callers run them in a
thread with ``asyncio.to_thread``. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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


class StoreConfigError(StoreUnavailable):
    """The store settings are incomplete or contradictory; the message names the variable
    to set or unset. Never answered by falling back to another backend."""


class SchemaOutdated(StoreUnavailable):
    """The database has no NEXUS Grid schema, or an older one (the original NADG's
    ``worker_nodes`` only); the message says how to apply ``database/schema.sql``."""


class WorkerNotFound(StoreError):
    """No worker with the given id."""


class DuplicateWorker(StoreError):
    """A worker with the given URL is already registered."""


class TaskNotFound(StoreError):
    """No task with the given id."""


class SubtaskNotFound(StoreError):
    """No subtask with the given id."""


@dataclass(frozen=True, slots=True)
class AttemptWrite:
    """One attempt to record in a batch: ``subtask_id`` was sent to ``worker_id``."""

    subtask_id: str
    worker_id: int | None


@dataclass(frozen=True, slots=True)
class OutcomeWrite:
    """One outcome to record in a batch (the arguments of :meth:`JobStore.record_result`)."""

    subtask_id: str
    status: SubtaskStatus
    result: dict[str, Any] | None = None
    error: str | None = None
    worker_id: int | None = None


@dataclass(frozen=True, slots=True)
class BatchWritten:
    """What one :meth:`JobStore.write_batch` call did, item by item, in the order given.

    ``attempts[i]`` is the attempt count after the i-th attempt (as :meth:`record_attempt`
    returns); ``recorded[i]`` is True when the i-th outcome was recorded (as
    :meth:`record_result` returns: False when the subtask already had a completed result).
    """

    attempts: list[int] = field(default_factory=list)
    recorded: list[bool] = field(default_factory=list)


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

    def record_dispatches(self, worker_id: int, *, ok: int, failed: int = 0,
                          latency_ms: float | None = None) -> None:
        """Count ``ok`` + ``failed`` subtask outcomes on a worker in one write (a batch of
        :meth:`record_dispatch`: ``total_tasks`` grows by ``ok``)."""
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

    def write_batch(
        self, attempts: Sequence[AttemptWrite], outcomes: Sequence[OutcomeWrite]
    ) -> BatchWritten:
        """Record many attempts and then many outcomes in ONE transaction (one round trip
        where the backend allows): the group commit of the job runner.

        Each item means exactly what :meth:`record_attempt` / :meth:`record_result` would,
        applied in the order given (attempts first): the first completed result of a
        subtask wins, also against another completed one in the same batch. All or
        nothing: an unknown subtask id raises SubtaskNotFound and nothing is written.
        """
        ...

    def cancel_unfinished_subtasks(self, task_id: str, reason: str = "cancelled") -> int:
        """Mark every pending or running subtask of a task cancelled, in one statement;
        returns how many. Completed and failed subtasks keep their outcome. A ``reason``
        other than ``"cancelled"`` is written to ``error`` (with ``finished_at``); the
        plain one is not (the status says it, and the narrower write is quicker)."""
        ...

    def subtask_window(
        self,
        task_id: str,
        *,
        after_idx: int = -1,
        limit: int = 1000,
        statuses: Iterable[SubtaskStatus] | None = None,
    ) -> list[SubtaskRecord]:
        """At most ``limit`` subtasks of a task with ``idx > after_idx`` (in ``statuses``,
        or any), ordered by idx: read a large task window by window, never whole."""
        ...

    def subtask_counts_by_worker(self, task_id: str) -> dict[int | None, dict[SubtaskStatus, int]]:
        """Per worker (None: not sent yet), how many of a task's subtasks are in each
        status; one aggregate query. Raises TaskNotFound."""
        ...

    def get_task_record(self, task_id: str) -> TaskRecord:
        """A task's row alone, without its subtasks; raises TaskNotFound."""
        ...

    def subtask_counts(self, task_id: str) -> dict[SubtaskStatus, int]:
        """How many subtasks of a task are in each status (statuses with none left out);
        one aggregate query, never the rows. Raises TaskNotFound."""
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
    "AttemptWrite",
    "BatchWritten",
    "OutcomeWrite",
    "DuplicateWorker",
    "JobStore",
    "ModelStore",
    "Registry",
    "SchemaOutdated",
    "Store",
    "StoreConfigError",
    "StoreError",
    "StoreUnavailable",
    "SubtaskNotFound",
    "TaskNotFound",
    "WorkerNotFound",
    "status_after_ping",
    "SubtaskRecord",
]
