"""The centralised baseline: the same model and data, trained in one place."""

from __future__ import annotations

from nexus_common.protocol import ModelSpec, TrainData, TrainHyper
from nexus_common.training.families import init_weights
from nexus_common.training.local import train_local
from nexus_common.training.tensors import Tensors


def train_centralised(spec: ModelSpec, data: TrainData, hyper: TrainHyper, passes: float,
                      seed: int = 0) -> Tensors:
    """Weights after ``passes`` epochs over ``data`` (initialised as federated runs are)."""
    weights = init_weights(spec, seed)
    step = hyper.model_copy(update={"epochs": passes, "local_steps": None})
    result = train_local(spec, weights, data, step)
    return {k: weights[k] + result.delta[k] for k in weights}
