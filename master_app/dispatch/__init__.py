"""The dispatcher package: fan subtasks out over many unreliable workers, every result once.

Its public surface is re-exported here; the rest of the master imports only this::

    async with Dispatcher(settings, registry=store) as dispatcher:
        report = await dispatcher.run_subtasks(subtasks, workers, on_event=..., sink=...)
    report.results   # the first completed result of each subtask
    report.failures  # exactly which subtask failed and why (failures are data)

Where things live:

- :mod:`.dispatcher`: :class:`Dispatcher`, which owns the HTTP client and the breakers;
- :mod:`.run`: the loop of one ``run_subtasks`` call (launch, hedge, retry, end);
- :mod:`.lanes`: per-worker slots, per-subtask state, least-loaded selection, batching;
- :mod:`.retry`: the attempt limit and backoff with jitter;
- :mod:`.hedging`: when a straggler gets a second copy, and where;
- :mod:`.health`: breaker feedback, the registry mirror, the all-down watch;
- :mod:`.circuit`: the circuit breaker of one worker;
- :mod:`.client`: :class:`WorkerClient`, the signed HTTP client, and its error tree::

      WorkerCallError            a call produced no result
      ├── WorkerUnreachable      no answer in time, or a transport error
      │   └── WorkerRefused      the connection was refused: the worker got nothing
      ├── WorkerBusy             503: every slot busy (Retry-After)
      ├── WorkerAuthError        401/403, or the worker could not prove its key
      └── WorkerProtocolError    an answer that is not the protocol's

- :mod:`.events`: :class:`ProgressEvent` and :class:`EventKind` for live progress;
- :mod:`.report`: :class:`DispatchReport`, :class:`Failure`, :class:`OutcomeSink`.
"""

from master_app.dispatch.circuit import CircuitBreaker
from master_app.dispatch.client import (
    WorkerAuthError,
    WorkerBusy,
    WorkerCallError,
    WorkerClient,
    WorkerProtocolError,
    WorkerRefused,
    WorkerUnreachable,
)
from master_app.dispatch.dispatcher import Dispatcher
from master_app.dispatch.events import EventCallback, EventKind, ProgressEvent
from master_app.dispatch.report import DispatchReport, Failure, OutcomeSink

__all__ = [
    "CircuitBreaker", "DispatchReport", "Dispatcher", "EventCallback", "EventKind", "Failure",
    "OutcomeSink", "ProgressEvent", "WorkerAuthError", "WorkerBusy", "WorkerCallError",
    "WorkerClient", "WorkerProtocolError", "WorkerRefused", "WorkerUnreachable",
]
