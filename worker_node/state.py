"""What one running worker app holds: settings, caches, the runner, metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from worker_node.device import Placement
from worker_node.heads import HeadCache
from worker_node.metrics import WorkerMetrics
from worker_node.models import ModelCache
from worker_node.runner import SubtaskRunner
from worker_node.settings import WorkerSettings

VERSION = "0.1.0"


@dataclass
class WorkerState:
    """Built by the lifespan, read by the routes through ``deps``."""

    settings: WorkerSettings
    metrics: WorkerMetrics
    models: ModelCache
    heads: HeadCache
    runner: SubtaskRunner
    placement: Placement = field(default_factory=Placement)
    started_at: float = field(default_factory=time.monotonic)
    registered_id: int | None = None

    @property
    def uptime_s(self) -> float:
        """Seconds since the worker started."""
        return time.monotonic() - self.started_at
