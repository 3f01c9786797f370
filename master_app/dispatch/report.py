"""What a dispatch run hands back: the :class:`DispatchReport` and its :class:`Failure` rows.

Also the :class:`OutcomeSink` protocol, the hook through which the job runner persists
attempts and outcomes as they land (the dispatcher itself needs no store).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from database.models import WorkerNode
from nexus_common.protocol import Subtask, SubtaskResult


@dataclass(frozen=True, slots=True)
class Failure:
    """A subtask that ended without a completed result, and why."""

    subtask_id: str
    idx: int
    reason: str
    attempts: int
    worker_id: int | None = None
    cancelled: bool = False


@dataclass
class DispatchReport:
    """What a run produced: results and failures, plus counters for benchmarks and the UI."""

    results: dict[str, SubtaskResult] = field(default_factory=dict)
    failures: dict[str, Failure] = field(default_factory=dict)
    winners: dict[str, int] = field(default_factory=dict)  # subtask id -> worker id
    attempts: int = 0
    retries: int = 0
    hedges: int = 0
    cancelled: bool = False
    deadline_passed: bool = False
    duration_s: float = 0.0
    round_trips_ms: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every subtask completed."""
        return not self.failures


class OutcomeSink(Protocol):
    """Where attempts and outcomes go as they happen (the job runner persists them)."""

    async def attempt(self, subtask: Subtask, worker: WorkerNode) -> None:
        """An attempt is being sent to ``worker``."""
        ...

    async def completed(self, subtask: Subtask, result: SubtaskResult,
                        worker: WorkerNode) -> None:
        """The first completed result of ``subtask`` landed."""
        ...

    async def failed(self, subtask: Subtask, failure: Failure) -> None:
        """``subtask`` ended without a result (no attempts left, cancelled, deadline)."""
        ...
