"""The centralised baseline: the same model and data, trained in one place."""

from __future__ import annotations

from worker_node.protocol import ModelSpec, TrainData, TrainHyper
from worker_node.training.families import init_weights
from worker_node.training.local import train_local
from worker_node.training.tensors import Tensors


def train_centralised(spec: ModelSpec, data: TrainData, hyper: TrainHyper, passes: float,
                      seed: int = 0) -> Tensors:
    """Weights after ``passes`` epochs over ``data`` (initialised as federated runs are)."""
    weights = init_weights(spec, seed)
    step = hyper.model_copy(update={"epochs": passes, "local_steps": None})
    result = train_local(spec, weights, data, step)
    return {k: weights[k] + result.delta[k] for k in weights}
