"""Prometheus metrics of one worker app, in its own CollectorRegistry.

A per-app registry (not prometheus_client's global one) lets several apps live in one
process, as they do in tests.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class WorkerMetrics:
    """Counters, histograms and gauges of a worker; ``render()`` gives the text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.subtasks = Counter(
            "nadg_worker_subtasks", "Subtasks answered, by kind and result status",
            ["kind", "status"], registry=self.registry,
        )
        self.duration = Histogram(
            "nadg_worker_subtask_duration_seconds", "Wall time of a subtask, by kind",
            ["kind"], buckets=DURATION_BUCKETS, registry=self.registry,
        )
        self.running = Gauge("nadg_worker_running", "Subtasks running now",
                             registry=self.registry)
        self.queued = Gauge("nadg_worker_queue_depth", "Subtasks waiting for a slot",
                            registry=self.registry)
        self.rejected_busy = Counter(
            "nadg_worker_busy_rejections", "Requests answered 503 because the queue was full",
            registry=self.registry,
        )
        self.model_load = Histogram(
            "nadg_worker_model_load_seconds", "Time to load a model into the cache",
            ["model"], buckets=DURATION_BUCKETS, registry=self.registry,
        )

    def bind_gauges(self, running: Callable[[], float], queued: Callable[[], float]) -> None:
        """Read the running and queued gauges from live callbacks at scrape time."""
        self.running.set_function(running)
        self.queued.set_function(queued)

    def observe(self, kind: str, status: str, seconds: float) -> None:
        """Count one answered subtask and its duration."""
        self.subtasks.labels(kind=kind, status=status).inc()
        self.duration.labels(kind=kind).observe(seconds)

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""
        return bytes(generate_latest(self.registry))
