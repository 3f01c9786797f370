"""FedAvg: global += server_lr * sample-weighted mean of the deltas."""

from __future__ import annotations

from typing import Any

from master_app.federated.strategies.base import (
    ClientUpdate,
    Strategy,
    weighted_mean_delta,
)
from nexus_common.training.tensors import Tensors


class FedAvg(Strategy):
    """Federated averaging (McMahan et al.), weighted by samples per client."""

    name = "fedavg"

    def __init__(self, server_lr: float = 1.0) -> None:
        if server_lr <= 0:
            raise ValueError("server_lr must be positive")
        self.server_lr = server_lr

    def aggregate(self, global_weights: Tensors, updates: list[ClientUpdate]) -> Tensors:
        mean = weighted_mean_delta(updates)
        return {k: v + self.server_lr * mean[k] for k, v in global_weights.items()}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "server_lr": self.server_lr}
