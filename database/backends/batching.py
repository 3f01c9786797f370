"""Batch-write planning shared by every backend: what one set-based write must do so that a
batch means exactly what the same calls one by one would have meant.

Within a batch a subtask may appear more than once (a hedged copy's attempt, a failure
then a retry's success). The store is written once per subtask:

* attempts: ``n`` attempts of a subtask add ``n``; the last worker is the one recorded;
  the k-th of them reports ``final - n + k``;
* outcomes: if the stored subtask is not yet completed, the write is its first completed
  outcome in the batch (or, with none, its last outcome); every outcome up to and including
  that first completed one was "recorded", the later ones were not. If the stored subtask
  is completed already, none was recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from database.models import SubtaskStatus
from database.store import AttemptWrite, BatchWritten, OutcomeWrite

#: Rows per set-based statement (keeps SQLite under its bound-parameter limit).
CHUNK = 500


@dataclass(frozen=True, slots=True)
class AttemptPlan:
    """One row of the attempts write: add ``n`` attempts, worker ``worker_id``."""

    subtask_id: str
    n: int
    worker_id: int | None


def plan_attempts(attempts: Sequence[AttemptWrite]) -> list[AttemptPlan]:
    """One :class:`AttemptPlan` per distinct subtask, in first-seen order."""
    counts: dict[str, int] = {}
    workers: dict[str, int | None] = {}
    for a in attempts:
        counts[a.subtask_id] = counts.get(a.subtask_id, 0) + 1
        workers[a.subtask_id] = a.worker_id
    return [AttemptPlan(sid, n, workers[sid]) for sid, n in counts.items()]


def attempt_counts(attempts: Sequence[AttemptWrite], final: dict[str, int]) -> list[int]:
    """What each attempt, one by one, would have returned, given the final counts."""
    totals: dict[str, int] = {}
    for a in attempts:
        totals[a.subtask_id] = totals.get(a.subtask_id, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for a in attempts:
        k = seen[a.subtask_id] = seen.get(a.subtask_id, 0) + 1
        out.append(final[a.subtask_id] - totals[a.subtask_id] + k)
    return out


def plan_outcomes(outcomes: Sequence[OutcomeWrite]) -> list[OutcomeWrite]:
    """The one write per distinct subtask (applied only where the store is not completed)."""
    chosen: dict[str, OutcomeWrite] = {}
    for o in outcomes:
        held = chosen.get(o.subtask_id)
        if held is not None and SubtaskStatus(held.status) is SubtaskStatus.COMPLETED:
            continue  # the first completed one stays
        chosen[o.subtask_id] = o
    return list(chosen.values())


def recorded_flags(outcomes: Sequence[OutcomeWrite], opened: set[str]) -> list[bool]:
    """Per outcome: recorded or not, given the subtasks whose write was applied."""
    closed: set[str] = set()
    flags = []
    for o in outcomes:
        ok = o.subtask_id in opened and o.subtask_id not in closed
        flags.append(ok)
        if ok and SubtaskStatus(o.status) is SubtaskStatus.COMPLETED:
            closed.add(o.subtask_id)
    return flags


def written(attempts: Sequence[AttemptWrite], final: dict[str, int],
            outcomes: Sequence[OutcomeWrite], opened: set[str]) -> BatchWritten:
    """The :class:`BatchWritten` of a batch, from what the set-based writes reported."""
    return BatchWritten(attempts=attempt_counts(attempts, final),
                        recorded=recorded_flags(outcomes, opened))
