"""Records of the registry and job store: plain frozen dataclasses, backend-neutral.

Every backend (SQLite, Postgres, Supabase) reads rows into these and nothing else, so
callers never see a backend's row type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the only kind of timestamp we store)."""
    return datetime.now(UTC)


class WorkerStatus(StrEnum):
    """A worker's registry status (the original NADG values plus ``draining``)."""

    ACTIVE = "active"
    BUSY = "busy"
    OFFLINE = "offline"
    DRAINING = "draining"

    @property
    def live(self) -> bool:
        """True when a worker in this status may be given work (:data:`LIVE_STATUSES`)."""
        return self in LIVE_STATUSES


#: The one definition of a *live* worker: the registry says it answers and takes work.
#: ``offline`` ones missed their pings; ``draining`` ones take no new work. Everything that
#: asks "is this worker live?" uses this (the master through ``master_app.service``).
LIVE_STATUSES: tuple[WorkerStatus, ...] = (WorkerStatus.ACTIVE, WorkerStatus.BUSY)


class CircuitState(StrEnum):
    """The master's circuit breaker for one worker, mirrored into the registry."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class TaskStatus(StrEnum):
    """Lifecycle of a task."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for the terminal states."""
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class SubtaskStatus(StrEnum):
    """Lifecycle of a subtask in the store."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class WorkerNode:
    """One row of ``worker_nodes``."""

    id: int
    vm_url: str
    status: WorkerStatus
    name: str | None = None
    capabilities: tuple[str, ...] = ()
    max_concurrency: int = 4
    total_tasks: int = 0
    last_ping: datetime | None = None
    last_latency_ms: float | None = None
    consecutive_failures: int = 0
    circuit_state: CircuitState = CircuitState.CLOSED
    version: str | None = None
    created_at: datetime | None = None

    @property
    def label(self) -> str:
        """A short human name: the name if set, else the URL."""
        return self.name or self.vm_url


@dataclass(frozen=True, slots=True)
class PingRecord:
    """One row of ``worker_pings``: the history behind the latency chart."""

    worker_id: int
    at: datetime
    ok: bool
    latency_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class NewSubtask:
    """A subtask to create with its task: position, kind and JSON payload."""

    idx: int
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One row of ``tasks``."""

    id: str
    command: str
    plan: dict[str, Any]
    status: TaskStatus
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result_summary: dict[str, Any] | None = None
    error: str | None = None
    subtask_count: int = 0


@dataclass(frozen=True, slots=True)
class SubtaskRecord:
    """One row of ``subtasks``."""

    id: str
    task_id: str
    idx: int
    kind: str
    payload: dict[str, Any]
    status: SubtaskStatus
    attempts: int = 0
    worker_id: int | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TaskDetail:
    """A task with all its subtasks, ordered by ``idx``."""

    task: TaskRecord
    subtasks: list[SubtaskRecord] = field(default_factory=list)

    def count(self, status: SubtaskStatus) -> int:
        """How many subtasks are in ``status``."""
        return sum(1 for s in self.subtasks if s.status is status)


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """One row of ``models``: a trained head or adapter the grid can deploy."""

    id: str
    name: str
    family: str
    sha256: str
    uri: str
    labels: tuple[str, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """One row of ``model_deployments``: which model is on which worker."""

    model_id: str
    worker_id: int
    deployed_at: datetime
