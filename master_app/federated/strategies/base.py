"""The :class:`Strategy` interface and the sample-weighted average every strategy uses."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from nexus_common.training.tensors import Tensors


@dataclass(frozen=True)
class ClientUpdate:
    """One worker's answer in a round: its delta and how many samples it trained on."""

    shard: int
    delta: Tensors
    num_samples: int
    loss: float


class Strategy(ABC):
    """Merges one round's client updates into new global weights.

    A strategy may keep state across rounds (DiLoCo's momentum); that state is saved in
    checkpoints through :meth:`state` / :meth:`load_state`, so a resumed run continues
    exactly where it stopped.
    """

    name: str

    @abstractmethod
    def aggregate(self, global_weights: Tensors, updates: list[ClientUpdate]) -> Tensors:
        """New global weights from the current ones and a non-empty list of updates."""

    def state(self) -> Tensors:
        """Tensors to checkpoint (none by default)."""
        return {}

    def load_state(self, state: Tensors) -> None:
        """Restore what :meth:`state` returned (stateless strategies ignore it)."""
        del state

    def config(self) -> dict[str, Any]:
        """Hyperparameters, for checkpoint metadata and reports."""
        return {"name": self.name}


def weighted_mean_delta(updates: list[ClientUpdate]) -> Tensors:
    """Sample-weighted mean of the updates' deltas (deterministic order: by shard)."""
    if not updates:
        raise ValueError("cannot aggregate an empty round")
    ordered = sorted(updates, key=lambda u: u.shard)
    total = sum(u.num_samples for u in ordered)
    if total <= 0:
        raise ValueError("updates carry no samples")
    names = ordered[0].delta.keys()
    out: Tensors = {}
    for name in names:
        acc = torch.zeros_like(ordered[0].delta[name], dtype=torch.float64)
        for u in ordered:
            acc += u.delta[name].to(torch.float64) * (u.num_samples / total)
        out[name] = acc.to(torch.float32)
    return out


def make_strategy(name: str, **kwargs: Any) -> Strategy:
    """``fedavg`` or ``diloco`` with keyword hyperparameters."""
    from master_app.federated.strategies.diloco import DiLoCo
    from master_app.federated.strategies.fedavg import FedAvg

    if name == "fedavg":
        return FedAvg(**kwargs)
    if name == "diloco":
        return DiLoCo(**kwargs)
    raise ValueError(f"unknown strategy {name!r}: use 'fedavg' or 'diloco'")
