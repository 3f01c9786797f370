"""DiLoCo-style outer optimizer: Nesterov momentum SGD on the averaged delta.

The outer gradient is ``g = -mean_delta``; with momentum buffer ``m``:
``m = mu * m + g`` and ``w = w - lr * (g + mu * m)`` (PyTorch's Nesterov form).
"""

from __future__ import annotations

from typing import Any

import torch

from master_app.federated.strategies.base import (
    ClientUpdate,
    Strategy,
    weighted_mean_delta,
)
from nexus_common.training.tensors import Tensors


class DiLoCo(Strategy):
    """Outer Nesterov momentum over the sample-weighted mean delta (Douillard et al.)."""

    name = "diloco"

    def __init__(self, outer_lr: float = 0.7, momentum: float = 0.9) -> None:
        if outer_lr <= 0 or not 0.0 <= momentum < 1.0:
            raise ValueError("outer_lr must be positive and momentum in [0, 1)")
        self.outer_lr = outer_lr
        self.momentum = momentum
        self._buf: Tensors = {}

    def aggregate(self, global_weights: Tensors, updates: list[ClientUpdate]) -> Tensors:
        mean = weighted_mean_delta(updates)
        out: Tensors = {}
        for name, w in global_weights.items():
            g = -mean[name]
            buf = self._buf.get(name)
            buf = g.clone() if buf is None else self.momentum * buf + g
            self._buf[name] = buf
            out[name] = w - self.outer_lr * (g + self.momentum * buf)
        return out

    def state(self) -> Tensors:
        return {k: v.clone() for k, v in self._buf.items()}

    def load_state(self, state: Tensors) -> None:
        self._buf = {k: v.to(torch.float32).clone() for k, v in state.items()}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "outer_lr": self.outer_lr, "momentum": self.momentum}
