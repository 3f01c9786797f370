"""Sharding: deterministic code turns (plan, dataset) into subtasks.

Shard size: enough shards that every worker slot gets about ``SHARDS_PER_SLOT`` of them
(so a slow or lost shard costs little and fast workers take more), never more than the
protocol's ``MAX_TEXTS`` items a subtask, and never below 1. The plan's ``shard_size`` /
``shard_count`` are honoured when they fit the same limits.

A plan that lists its subtasks gets one shard per subtask, in order; an ``embed`` or
``classify`` subtask over a slice of rows gets those rows' texts here (the planner never
copies data into a plan). A python ``span`` is cut into even ``[lo, hi)`` ranges here too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from database.models import NewSubtask, WorkerNode
from master_app.intake import Dataset
from master_app.planning.plan import Plan, PlanError, render_prompt, span_parts
from master_app.planning.steps import ClassifyStep, EmbedStep
from nexus_common import protocol
from nexus_common.protocol import SubtaskKind

logger = logging.getLogger(__name__)

#: How many shards each worker slot should get on average.
SHARDS_PER_SLOT = 4
#: Smallest shard worth a round trip for model kinds (unless the data is smaller).
MIN_SHARD = 4
#: Stored beside a generate shard's payload: its input texts (the prompts wrap them).
ROW_TEXTS = "row_texts"
#: Keys of a stored payload that never go on the wire.
BOOKKEEPING = ("rows", ROW_TEXTS)


@dataclass(frozen=True, slots=True)
class Shard:
    """One subtask's worth of work: which input rows it covers and its payload."""

    idx: int
    rows: tuple[int, ...]
    payload: dict[str, Any]
    kind: SubtaskKind | None = None

    def to_new_subtask(self, kind: SubtaskKind | None = None) -> NewSubtask:
        """The store record to create (of this shard's own kind when it has one)."""
        chosen = self.kind or kind
        if chosen is None:
            raise PlanError(f"shard {self.idx} has no kind")
        return NewSubtask(idx=self.idx, kind=chosen.value,
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
    if kind is None:
        return _step_shards(plan, dataset)
    if kind in (SubtaskKind.CLASSIFY, SubtaskKind.EMBED, SubtaskKind.GENERATE):
        if dataset is None or plan.text_column is None:
            raise PlanError(f"{kind.value} needs data and a text column.")
        texts = [t[: protocol.MAX_TEXT_CHARS] for t in dataset.texts(plan.text_column)]
        size = shard_size_for(len(texts), workers, plan)
        named = [f for f in plan.template_fields if f != "text"]
        records = dataset.records() if kind is SubtaskKind.GENERATE and named else None
        shards = []
        for idx, start in enumerate(range(0, len(texts), size)):
            rows = tuple(range(start, min(start + size, len(texts))))
            payload = plan.sample_payload([texts[i] for i in rows]).model_dump(mode="json")
            if kind is SubtaskKind.GENERATE:  # the results table shows the input, not the prompt
                payload[ROW_TEXTS] = [texts[i] for i in rows]
                if records is not None:
                    payload["prompts"] = [render_prompt(plan.prompt_template, texts[i],
                                                        records[i]) for i in rows]
            shards.append(Shard(idx=idx, rows=rows, payload=payload, kind=kind))
        logger.info("%d %s shards of up to %d rows", len(shards), kind.value, size)
        return shards
    if kind is SubtaskKind.PYTHON:
        code = str(plan.params["code"])
        inputs: list[Any]
        if dataset is not None and not {"range", "inputs", "span"} & set(plan.params):
            inputs = dataset.records()
            if plan.text_column:
                inputs = [r.get(plan.text_column) for r in inputs]
        elif "inputs" in plan.params:
            inputs = list(plan.params["inputs"])
        elif "span" in plan.params:
            inputs = list(span_parts(plan.params["span"]))
        else:
            inputs = list(range(int(plan.params.get("range", 1))))
        return [Shard(idx=i, rows=(i,), payload=protocol.PythonPayload(
            code=code, input=value).model_dump(mode="json"), kind=kind)
            for i, value in enumerate(inputs)]
    if kind is SubtaskKind.NOOP:
        count = int(plan.params.get("count", 1))
        sleep_ms = float(plan.params.get("sleep_ms", 0.0))
        return [Shard(idx=i, rows=(i,), payload=protocol.NoopPayload(
            sleep_ms=sleep_ms, echo=i).model_dump(mode="json"), kind=kind)
            for i in range(count)]
    raise PlanError(f"cannot shard operation {kind.value!r}")


def _step_shards(plan: Plan, dataset: Dataset | None) -> list[Shard]:
    """One shard per listed subtask; row slices get their texts from the data."""
    shards = []
    for idx, step in enumerate(plan.steps):
        texts: list[str] | None = None
        rows: tuple[int, ...] = (idx,)
        if isinstance(step, EmbedStep | ClassifyStep) and step.rows is not None:
            if dataset is None or step.text_column is None:
                raise PlanError(f"subtask {idx} ({step.kind}) works on data rows; give a "
                                "data file with a text column.")
            column = dataset.texts(step.text_column)
            if step.rows.stop > len(column):
                raise PlanError(f"subtask {idx} asks for rows up to {step.rows.stop - 1}, "
                                f"but the data has {len(column)} rows.")
            rows = tuple(range(step.rows.start, step.rows.stop))
            texts = [column[i][: protocol.MAX_TEXT_CHARS] for i in rows]
        payload = step.payload(texts).model_dump(mode="json")
        shards.append(Shard(idx=idx, rows=rows, payload=payload, kind=SubtaskKind(step.kind)))
    logger.info("%d listed subtasks", len(shards))
    return shards


def payload_of(stored: dict[str, Any]) -> dict[str, Any]:
    """The wire payload of a stored subtask payload (drops the bookkeeping: ``rows``, the
    input rows it covers, and ``row_texts``, a generate shard's inputs)."""
    return {k: v for k, v in stored.items() if k not in BOOKKEEPING}
