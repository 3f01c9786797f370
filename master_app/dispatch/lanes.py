"""The bookkeeping of one dispatch run, and which worker gets the next subtask.

A :class:`Lane` is one worker's slots (its ``max_concurrency``, what is in flight, a
``busy_until`` pause after a 429) next to its circuit breaker. An :class:`Item` is one
subtask's state across attempts; each attempt or hedged copy in flight is a :class:`Copy`.
Selection is least-loaded first (``in_flight / limit``, then worker id), avoiding workers a
subtask already failed on while another live worker remains; small subtasks of the
:data:`BATCHABLE` kinds go several to one request when the queue outruns the free slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from database.models import CircuitState, WorkerNode
from master_app.dispatch.circuit import CircuitBreaker
from nexus_common.protocol import Subtask, SubtaskKind

#: Kinds cheap enough per item that batching several into one request pays.
BATCHABLE = frozenset({SubtaskKind.NOOP, SubtaskKind.PYTHON})


@dataclass
class Lane:
    """One worker's slots in a run, and its (process-wide) circuit breaker."""

    worker: WorkerNode
    breaker: CircuitBreaker
    #: Subtasks sent per slot (``NADG_PIPELINE``, while subtasks are short): above 1, what
    #: exceeds the slots waits in the worker's queue, so a slot that ends starts the next
    #: subtask without a round trip.
    depth: int = 1
    #: The worker answered busy while running subtasks of this run: its queue is full, so
    #: the lane keeps to its slots for the rest of the run.
    queue_full: bool = False
    in_flight: int = 0
    busy_until: float = 0.0
    #: When the worker began answering only busy (503), None since its last answer.
    busy_since: float | None = None
    #: While the breaker is open: when ``/health`` may be asked next, and whether it is.
    next_health_check: float = 0.0
    health_check_running: bool = False

    @property
    def limit(self) -> int:
        """How many subtasks the worker may run at once (at least 1)."""
        return max(1, self.worker.max_concurrency)

    @property
    def load(self) -> float:
        """The fraction of the worker's slots in use."""
        return self.in_flight / self.limit

    def free(self, now: float, *, queued: bool = True) -> int:
        """Room for more subtasks at ``now``: ``depth`` per slot (only the slots themselves
        with ``queued=False``); none while paused or open, one probe when half-open."""
        if now < self.busy_until or not self.breaker.allows():
            return 0
        if self.breaker.state is CircuitState.HALF_OPEN:
            return 1 if self.in_flight == 0 else 0
        window = self.limit * (self.depth if queued else 1)
        return max(0, window - self.in_flight)


@dataclass
class Copy:
    """One copy of a subtask in flight on a lane (an attempt, or a hedged second copy)."""

    lane: Lane
    started: float
    task: asyncio.Task[None] | None = None
    hedge: bool = False


@dataclass
class Item:
    """One subtask's state across its attempts."""

    subtask: Subtask
    idx: int
    attempts: int = 0
    not_before: float = 0.0
    done: bool = False
    failed_on: set[int] = field(default_factory=set)
    copies: list[Copy] = field(default_factory=list)
    last_error: str = ""
    last_worker: int | None = None


def idx_of(subtask: Subtask, position: int) -> int:
    """The subtask's index in its task: the numeric tail of its id, else its position."""
    tail = subtask.id.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else position


def ready_items(items: Sequence[Item], now: float, *, start: int = 0,
                limit: int | None = None) -> list[Item]:
    """Items waiting to be sent: not done, nothing in flight, past their backoff.

    Scans from ``start`` (every item before it is done) and stops after ``limit`` found, so
    a launch costs what it can send, not the length of the task.
    """
    if limit is None:
        return [it for it in items[start:] if not it.done and not it.copies
                and it.not_before <= now]
    out: list[Item] = []
    for i in range(start, len(items)):
        it = items[i]
        if not it.done and not it.copies and it.not_before <= now:
            out.append(it)
            if len(out) >= limit:
                break
    return out


def least_loaded(lanes: Sequence[Lane]) -> Lane:
    """The lane with the smallest load (ties go to the lowest worker id)."""
    return min(lanes, key=lambda lane: (lane.load, lane.worker.id))


def pick_lane(lanes: Sequence[Lane], item: Item, now: float) -> Lane | None:
    """The lane for ``item`` now, or None to leave it queued.

    Prefers free lanes whose worker ``item`` has not failed on; when there is none it waits
    while such a worker is still not open, and otherwise takes any free lane.
    """
    free = [lane for lane in lanes if lane.free(now) > 0]
    if not free:
        return None
    fresh = [lane for lane in free if lane.worker.id not in item.failed_on]
    if not fresh:
        others_alive = [lane for lane in lanes if lane.worker.id not in item.failed_on
                        and lane.breaker.state is not CircuitState.OPEN]
        if others_alive:
            return None  # wait for a worker it has not failed on
        fresh = free
    return least_loaded(fresh)


def select_batch(item: Item, lane: Lane, ready: Sequence[Item], *, free_slots: int,
                 batch_max: int, now: float) -> list[Item]:
    """``item`` plus, when it pays, other ready items to send to ``lane`` in one request.

    Batching happens only for :data:`BATCHABLE` kinds, when the ready queue is longer than
    the free slots; the batch fills the lane's free slots up to ``batch_max`` and skips
    items that already failed on this worker.
    """
    batch = [item]
    room = min(lane.free(now), batch_max)
    if item.subtask.kind in BATCHABLE and room > 1 and len(ready) > free_slots:
        for other in ready:
            if len(batch) >= room:
                break
            if (other is not item and not other.copies and not other.done
                    and other.subtask.kind in BATCHABLE
                    and lane.worker.id not in other.failed_on):
                batch.append(other)
    return batch
