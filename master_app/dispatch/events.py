"""Progress events: what the dispatcher tells the UI and the CLI as a task runs.

One :class:`ProgressEvent` per thing that happens to a subtask on a worker. The counts
(``done``, ``failed``, ``total``, ``in_flight``) are the task's totals at that moment, so
a progress bar needs only the latest event; per-worker lanes group by ``worker_id``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class EventKind(StrEnum):
    """What happened."""

    DISPATCHED = "dispatched"  # an attempt was sent to a worker
    COMPLETED = "completed"  # the first completed result of a subtask landed
    FAILED = "failed"  # a subtask failed for good (no more attempts)
    RETRIED = "retried"  # an attempt failed; the subtask goes back in the queue
    HEDGED = "hedged"  # a straggler got a second copy on another worker
    CANCELLED = "cancelled"  # the task was cancelled or its deadline passed


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One event about one subtask (``idx`` is its position in the task)."""

    kind: EventKind
    subtask_id: str
    idx: int
    worker_id: int | None = None
    worker_url: str | None = None
    attempt: int = 0
    message: str = ""
    duration_ms: float | None = None
    done: int = 0
    failed: int = 0
    total: int = 0
    in_flight: int = 0
    at: float = field(default_factory=time.time)

    @property
    def finished(self) -> int:
        """Subtasks with a final outcome (completed or failed)."""
        return self.done + self.failed

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        return self.finished / self.total if self.total else 1.0


#: The callback type the dispatcher and the job runner accept.
EventCallback = Callable[[ProgressEvent], None]
