"""Sharding: deterministic code turns (plan, dataset) into subtasks.

Shard size: enough shards that every worker slot gets about ``SHARDS_PER_SLOT`` of them
(so a slow or lost shard costs little and fast workers take more), never more than the
protocol's ``MAX_TEXTS`` items a subtask, and never below 1. The plan's ``shard_size`` /
``shard_count`` are honoured when they fit the same limits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from database.models import NewSubtask, WorkerNode
from master_app.intake import Dataset
from master_app.planning.plan import Plan, PlanError
from worker_node import protocol
from worker_node.protocol import SubtaskKind

logger = logging.getLogger(__name__)

#: How many shards each worker slot should get on average.
SHARDS_PER_SLOT = 4
#: Smallest shard worth a round trip for model kinds (unless the data is smaller).
MIN_SHARD = 4


@dataclass(frozen=True, slots=True)
class Shard:
    """One subtask's worth of work: which input rows it covers and its payload."""

    idx: int
    rows: tuple[int, ...]
    payload: dict[str, Any]

    def to_new_subtask(self, kind: SubtaskKind) -> NewSubtask:
        """The store record to create."""
        return NewSubtask(idx=self.idx, kind=kind.value,
                          payload={**self.payload, "rows": list(self.rows)})


def total_slots(workers: Sequence[WorkerNode]) -> int:
    """Sum of the workers' ``max_concurrency`` (at least 1)."""
    return max(1, sum(max(1, w.max_concurrency) for w in workers))


def shard_size_for(items: int, workers: Sequence[WorkerNode], plan: Plan | None = None) -> int:
    """How many items a shard holds, for ``items`` items over ``workers``."""
    limit = protocol.MAX_TEXTS
    if plan is not None and plan.shard_size:
        return max(1, min(plan.shard_size, limit))
    if plan is not None and plan.shard_count:
        return max(1, min(limit, math.ceil(items / plan.shard_count)))
    target = math.ceil(items / (total_slots(workers) * SHARDS_PER_SLOT))
    return max(1, min(limit, max(min(MIN_SHARD, items), target)))


def build_shards(plan: Plan, dataset: Dataset | None,
                 workers: Sequence[WorkerNode]) -> list[Shard]:
    """The shards of a task, in input order; raises :class:`PlanError` if it cannot run."""
    kind = plan.operation
    if kind in (SubtaskKind.CLASSIFY, SubtaskKind.EMBED, SubtaskKind.GENERATE):
        if dataset is None or plan.text_column is None:
            raise PlanError(f"{kind.value} needs data and a text column.")
        texts = [t[: protocol.MAX_TEXT_CHARS] for t in dataset.texts(plan.text_column)]
        size = shard_size_for(len(texts), workers, plan)
        shards = []
        for idx, start in enumerate(range(0, len(texts), size)):
            rows = tuple(range(start, min(start + size, len(texts))))
            payload = plan.sample_payload([texts[i] for i in rows]).model_dump(mode="json")
            shards.append(Shard(idx=idx, rows=rows, payload=payload))
        logger.info("%d %s shards of up to %d rows", len(shards), kind.value, size)
        return shards
    if kind is SubtaskKind.PYTHON:
        code = str(plan.params["code"])
        inputs: list[Any]
        if dataset is not None and "range" not in plan.params and "inputs" not in plan.params:
            inputs = dataset.records()
            if plan.text_column:
                inputs = [r.get(plan.text_column) for r in inputs]
        elif "inputs" in plan.params:
            inputs = list(plan.params["inputs"])
        else:
            inputs = list(range(int(plan.params.get("range", 1))))
        return [Shard(idx=i, rows=(i,), payload=protocol.PythonPayload(
            code=code, input=value).model_dump(mode="json")) for i, value in enumerate(inputs)]
    if kind is SubtaskKind.NOOP:
        count = int(plan.params.get("count", 1))
        sleep_ms = float(plan.params.get("sleep_ms", 0.0))
        return [Shard(idx=i, rows=(i,), payload=protocol.NoopPayload(
            sleep_ms=sleep_ms, echo=i).model_dump(mode="json")) for i in range(count)]
    raise PlanError(f"cannot shard operation {kind.value!r}")


def payload_of(stored: dict[str, Any]) -> dict[str, Any]:
    """The wire payload of a stored subtask payload (drops the ``rows`` bookkeeping)."""
    return {k: v for k, v in stored.items() if k != "rows"}
