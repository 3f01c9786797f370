"""Aggregation strategies: how the master merges workers' deltas into the global model."""

from master_app.federated.strategies.base import ClientUpdate, Strategy, make_strategy
from master_app.federated.strategies.diloco import DiLoCo
from master_app.federated.strategies.fedavg import FedAvg

__all__ = ["ClientUpdate", "DiLoCo", "FedAvg", "Strategy", "make_strategy"]
