"""What a plan editor needs before Run: which operations, and how many subtasks."""

from __future__ import annotations

import math
from collections.abc import Sequence

from database.models import WorkerNode
from master_app.intake import DataError, Dataset
from master_app.planning.plan import Plan, PlanError
from master_app.sharding import build_shards, shard_size_for
from nexus_common.protocol import SubtaskKind

_TEXT_KINDS = (SubtaskKind.CLASSIFY, SubtaskKind.EMBED, SubtaskKind.GENERATE)


def plannable_operations() -> list[str]:
    """Operations a plan may name (training has its own page and command)."""
    return [k.value for k in SubtaskKind if k is not SubtaskKind.TRAIN]


def shards_editable(plan: Plan) -> bool:
    """Whether the shard count is a free choice (text kinds) or follows the inputs."""
    return plan.operation in _TEXT_KINDS


def suggested_shards(plan: Plan, dataset: Dataset | None,
                     workers: Sequence[WorkerNode]) -> int:
    """How many subtasks the plan makes as it stands over ``workers`` (the live ones:
    the same workers a submit shards over)."""
    if plan.operation in _TEXT_KINDS and dataset is not None:
        size = shard_size_for(len(dataset), workers, plan)
        return max(1, math.ceil(len(dataset) / size))
    try:
        return max(1, len(build_shards(plan, dataset, workers)))
    except (PlanError, DataError):
        return 1
