"""The master's Prometheus metrics, and the small HTTP server that exposes them.

In-process counters and histograms, fed by the dispatcher (:func:`observe_event`, called
for every :class:`~master_app.dispatch.events.ProgressEvent`; :func:`observe_breaker`;
:class:`TimedSink` around the job runner's store writes):

==========================================  ==============================================
``nadg_master_subtasks_total{outcome}``     subtasks finished: completed / failed / cancelled
``nadg_master_attempts_total``              attempts sent to workers
``nadg_master_retries_total``               attempts that failed and were requeued
``nadg_master_hedges_total``                second copies of stragglers
``nadg_master_subtask_seconds``             round trip of completed subtasks (histogram)
``nadg_master_store_write_seconds{op}``     store writes: attempt / completed / failed
``nadg_master_breaker_state{worker}``       0 closed, 1 half open, 2 open
``nadg_master_breaker_opened_total``        breakers that opened
==========================================  ==============================================

Read from the store at each scrape when a store is attached (:class:`StoreCollector`):
``nadg_tasks{status}`` (at most 1,000 counted per status), ``nadg_workers{status}``,
``nadg_worker_up{worker,name}`` and ``nadg_oldest_queued_subtask_seconds``.

Subtasks per second is ``rate(nadg_master_subtasks_total[1m])``. Serve it all with
:func:`start_metrics_server` (``run --metrics-port P``, ``NADG_METRICS_PORT``, the grid
launcher); docs/grafana-dashboard.json and docs/alerts.yml use these names.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from database.models import (
    CircuitState,
    SubtaskStatus,
    TaskStatus,
    WorkerNode,
    WorkerStatus,
)
from database.store import Store, StoreError
from master_app.local_grid import GridError

if TYPE_CHECKING:
    from master_app.dispatch.events import ProgressEvent
    from master_app.dispatch.report import Failure, OutcomeSink
    from nexus_common.protocol import Subtask, SubtaskResult

logger = logging.getLogger(__name__)

#: Where a metrics server binds unless told otherwise (``NADG_METRICS_ADDR``).
DEFAULT_ADDR = "127.0.0.1"
#: The highest count of tasks read per status at one scrape.
TASK_COUNT_CAP = 1000
_BREAKER_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class MasterMetrics:
    """Every metric of one master process, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.subtasks = Counter("nadg_master_subtasks", "Subtasks finished, by outcome",
                                ["outcome"], registry=r)
        self.attempts = Counter("nadg_master_attempts", "Attempts sent to workers",
                                registry=r)
        self.retries = Counter("nadg_master_retries", "Failed attempts requeued", registry=r)
        self.hedges = Counter("nadg_master_hedges", "Second copies of stragglers", registry=r)
        self.subtask_seconds = Histogram("nadg_master_subtask_seconds",
                                         "Round trip of completed subtasks",
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.store_write_seconds = Histogram("nadg_master_store_write_seconds",
                                             "Store writes of the job runner", ["op"],
                                             buckets=_LATENCY_BUCKETS, registry=r)
        self.breaker_state = Gauge("nadg_master_breaker_state",
                                   "Circuit breaker per worker: 0 closed, 1 half open, 2 open",
                                   ["worker"], registry=r)
        self.breaker_opened = Counter("nadg_master_breaker_opened", "Breakers that opened",
                                      registry=r)
        #: Each outcome's counter child, made once (present at 0 from the first scrape;
        #: ``labels()`` takes a lock and a lookup, and runs for every subtask).
        self.outcomes = {outcome: self.subtasks.labels(outcome)
                         for outcome in ("completed", "failed", "cancelled")}
        self.store_writes = {op: self.store_write_seconds.labels(op)
                             for op in ("attempt", "completed", "failed")}
        self._store_collector: StoreCollector | None = None
        self._lock = threading.Lock()

    def attach_store(self, store: Store | None) -> None:
        """Read tasks, workers and the queue from ``store`` at each scrape (None: stop)."""
        with self._lock:
            if self._store_collector is not None:
                self.registry.unregister(self._store_collector)
                self._store_collector = None
            if store is not None:
                self._store_collector = StoreCollector(store)
                self.registry.register(self._store_collector)


@functools.cache
def get_metrics() -> MasterMetrics:
    """The metrics of this process (made on first use)."""
    return MasterMetrics()


def observe_event(event: ProgressEvent) -> None:
    """Count one dispatcher event."""
    m = get_metrics()
    kind = event.kind.value
    if kind == "dispatched":
        m.attempts.inc()
    elif kind == "hedged":
        m.attempts.inc()
        m.hedges.inc()
    elif kind == "retried":
        m.retries.inc()
    elif kind == "completed":
        m.outcomes["completed"].inc()
        if event.duration_ms is not None:
            m.subtask_seconds.observe(event.duration_ms / 1000)
    elif kind in ("failed", "cancelled"):
        m.outcomes[kind].inc()


def observe_breaker(worker_id: int, before: CircuitState, after: CircuitState) -> None:
    """Record a worker's breaker state (and count it opening)."""
    m = get_metrics()
    m.breaker_state.labels(str(worker_id)).set(_BREAKER_VALUE[after])
    if after is CircuitState.OPEN and before is not CircuitState.OPEN:
        m.breaker_opened.inc()


class TimedSink:
    """Wraps an :class:`~master_app.dispatch.report.OutcomeSink`, timing each store write."""

    def __init__(self, inner: OutcomeSink) -> None:
        self.inner = inner
        self._hist = get_metrics().store_writes

    async def attempt(self, subtask: Subtask, worker: WorkerNode) -> None:
        """Timed ``attempt``."""
        started = time.perf_counter()
        try:
            await self.inner.attempt(subtask, worker)
        finally:
            self._hist["attempt"].observe(time.perf_counter() - started)

    async def completed(self, subtask: Subtask, result: SubtaskResult,
                        worker: WorkerNode) -> None:
        """Timed ``completed``."""
        started = time.perf_counter()
        try:
            await self.inner.completed(subtask, result, worker)
        finally:
            self._hist["completed"].observe(time.perf_counter() - started)

    async def failed(self, subtask: Subtask, failure: Failure) -> None:
        """Timed ``failed``."""
        started = time.perf_counter()
        try:
            await self.inner.failed(subtask, failure)
        finally:
            self._hist["failed"].observe(time.perf_counter() - started)


class StoreCollector:
    """Gauges read from the store at scrape time: tasks, workers, the oldest queued subtask."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> list[Any]:
        """Nothing up front: the store is read only when scraped."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Read the store; on a store error only ``nadg_store_up 0`` is reported."""
        up = GaugeMetricFamily("nadg_store_up", "1 when the store answered this scrape")
        try:
            families = self._read()
        except StoreError as exc:
            logger.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> list[GaugeMetricFamily]:
        tasks = GaugeMetricFamily("nadg_tasks", f"Tasks by status (at most {TASK_COUNT_CAP})",
                                  labels=["status"])
        for status in TaskStatus:
            count = len(self.store.list_tasks(limit=TASK_COUNT_CAP, statuses=[status]))
            tasks.add_metric([status.value], count)
        workers = self.store.list_workers()
        by_status = GaugeMetricFamily("nadg_workers", "Registered workers by status",
                                      labels=["status"])
        for wstatus in WorkerStatus:
            by_status.add_metric([wstatus.value],
                                 sum(1 for w in workers if w.status is wstatus))
        up = GaugeMetricFamily("nadg_worker_up", "1 when the registry says a worker is live",
                               labels=["worker", "name"])
        for w in workers:
            up.add_metric([str(w.id), w.name or ""],
                          1 if w.status.live else 0)
        oldest = GaugeMetricFamily("nadg_oldest_queued_subtask_seconds",
                                   "Age of the oldest pending subtask of an unfinished task")
        oldest.add_metric([], self._oldest_queued_s())
        return [tasks, by_status, up, oldest]

    def _oldest_queued_s(self) -> float:
        now = datetime.now(UTC)
        ages = []
        for task in self.store.list_unfinished_tasks():
            for sub in self.store.subtasks_by_status(task.id, [SubtaskStatus.PENDING]):
                created = sub.created_at or task.created_at
                if created.tzinfo is None:
                    created = created.replace(tzinfo=UTC)
                ages.append((now - created).total_seconds())
                break  # ordered by idx; the first is as old as any (one submission)
        return max(ages, default=0.0)


class MetricsError(GridError):
    """The metrics endpoint could not be served (a bad port, or one already in use)."""


@dataclass
class MetricsServer:
    """A running metrics endpoint; :meth:`close` stops it."""

    port: int
    addr: str
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        """The scrape URL."""
        return f"http://{self.addr}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def metrics_port_from_env() -> int | None:
    """``NADG_METRICS_PORT`` as a port number, None when unset; MetricsError when bad."""
    raw = os.environ.get("NADG_METRICS_PORT", "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        raise MetricsError(f"NADG_METRICS_PORT={raw!r} is not a port number; set 1-65535 "
                           "or unset it") from None
    if not 0 <= port <= 65535:
        raise MetricsError(f"NADG_METRICS_PORT={port} is out of range; set 1-65535 or unset it")
    return port


def start_metrics_server(port: int, store: Store | None = None,
                         addr: str | None = None) -> MetricsServer:
    """Serve this process's metrics on ``http://addr:port/metrics`` (a daemon thread).

    ``addr`` defaults to ``NADG_METRICS_ADDR`` or 127.0.0.1 (set 0.0.0.0 for a Prometheus
    on another machine); port 0 picks a free one. With ``store``, the store's gauges are
    included. Raises :class:`MetricsError` when the port cannot be bound.
    """
    metrics = get_metrics()
    host = addr or os.environ.get("NADG_METRICS_ADDR") or DEFAULT_ADDR
    try:
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise MetricsError(f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); "
                           "pick a free port with --metrics-port or NADG_METRICS_PORT") from None
    if store is not None:
        metrics.attach_store(store)
    bound = int(server.server_address[1])
    logger.info("master metrics on http://%s:%d/metrics", host, bound)
    return MetricsServer(port=bound, addr=host, _server=server, _thread=thread)


@contextlib.contextmanager
def serving_metrics(port: int | None) -> Iterator[MetricsServer | None]:
    """Serve the metrics on ``port`` (or ``NADG_METRICS_PORT``; neither: nothing) for the
    ``with`` block. Attach the store with ``get_metrics().attach_store(store)``."""
    port = port if port is not None else metrics_port_from_env()
    if port is None:
        yield None
        return
    server = start_metrics_server(port)
    try:
        yield server
    finally:
        server.close()
        get_metrics().attach_store(None)
