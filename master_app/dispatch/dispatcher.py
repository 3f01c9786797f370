"""The dispatcher: fan subtasks out over many unreliable workers, get every result once.

``await dispatcher.run_subtasks(subtasks, workers, on_event=..., sink=..., cancel=...)``
returns a :class:`DispatchReport` with ``results`` (the first completed result of each
subtask) and ``failures`` (exactly which subtask failed and why): failures are data.

What it does for each run:

- per-worker concurrency limits (``max_concurrency`` from the registry), least-loaded
  worker first; ``/execute/batch`` for small subtasks when the queue is much longer than
  the free slots;
- retries with exponential backoff and jitter; a subtask that failed on one worker goes to
  another one when there is one;
- a circuit breaker per worker (:mod:`master_app.dispatch.circuit`), mirrored to the registry;
- hedging: a subtask running far past the median of finished ones gets a second copy on
  an idle worker; the first result wins, the other copy is cancelled;
- a deadline and cancellation (an :class:`asyncio.Event`); when every worker is down for
  longer than ``all_down_grace_s`` the remaining subtasks fail with that reason.

The optional :class:`OutcomeSink` is how the job runner persists attempts and results as
they land; the dispatcher itself needs no store.

Where things live (everything public is re-exported here):

- :mod:`master_app.dispatch.report`: :class:`DispatchReport`, :class:`Failure`,
  :class:`OutcomeSink`;
- :mod:`master_app.dispatch.lanes`: per-worker slots (:class:`~master_app.dispatch.lanes.Lane`),
  per-subtask state, least-loaded worker selection and batching (:data:`BATCHABLE`);
- :mod:`master_app.dispatch.retry`: attempt limit and backoff with jitter;
- :mod:`master_app.dispatch.hedging`: when a straggler gets a second copy, and where;
- :mod:`master_app.dispatch.health`: breaker feedback, registry mirror, the all-down watch;
- :mod:`master_app.dispatch.run`: the loop of one ``run_subtasks`` call;
- this module: :class:`Dispatcher`, which owns the HTTP client and the breakers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx

from database.models import WorkerNode
from database.store import Registry
from master_app.dispatch.circuit import CircuitBreaker
from master_app.dispatch.client import WorkerClient
from master_app.dispatch.events import EventCallback
from master_app.dispatch.lanes import BATCHABLE, Lane
from master_app.dispatch.report import DispatchReport, Failure, OutcomeSink
from master_app.dispatch.run import DispatchRun
from master_app.settings import MasterSettings
from nexus_common.http_transport import worker_client_http
from nexus_common.protocol import Subtask

__all__ = ["BATCHABLE", "Dispatcher", "DispatchReport", "Failure", "OutcomeSink"]


class Dispatcher:
    """Fans subtasks out to workers. One per process; breakers persist across runs."""

    def __init__(
        self,
        settings: MasterSettings,
        *,
        http: httpx.AsyncClient | None = None,
        token: str | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.settings = settings
        limits = httpx.Limits(max_connections=settings.max_connections,
                              max_keepalive_connections=settings.max_connections)
        self._own_http = http is None
        self.http = http or worker_client_http(limits)
        self.client = WorkerClient(self.http, token if token is not None else settings.auth_token)
        self.registry = registry
        self.breakers: dict[int, CircuitBreaker] = {}

    async def aclose(self) -> None:
        """Close the HTTP client if this dispatcher made it."""
        if self._own_http:
            await self.http.aclose()

    async def __aenter__(self) -> Dispatcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def breaker(self, worker_id: int) -> CircuitBreaker:
        """The breaker of a worker (made on first use)."""
        if worker_id not in self.breakers:
            self.breakers[worker_id] = CircuitBreaker(
                self.settings.circuit_failures, self.settings.circuit_cooldown_s)
        return self.breakers[worker_id]

    async def run_subtasks(
        self,
        subtasks: Sequence[Subtask],
        workers: Sequence[WorkerNode],
        *,
        on_event: EventCallback | None = None,
        sink: OutcomeSink | None = None,
        cancel: asyncio.Event | None = None,
        deadline_s: float | None = None,
    ) -> DispatchReport:
        """Run ``subtasks`` on ``workers`` until each has a result or a final failure."""
        run = DispatchRun(
            self.settings, self.client, subtasks,
            [Lane(w, self.breaker(w.id)) for w in workers],
            registry=self.registry, on_event=on_event, sink=sink, cancel=cancel,
            deadline_s=deadline_s if deadline_s is not None else self.settings.task_deadline_s)
        return await run.execute()
