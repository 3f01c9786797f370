"""A run's progress events, counting only outcomes already announced.

The report takes an outcome before the store's write of it ends; counting it then would
show "60 of 60 done" while the last results are still being written and their events not
yet sent, and the per-worker lanes (folded from COMPLETED events) would lag the count.
"""

from __future__ import annotations

import logging

from master_app.dispatch.events import EventCallback, EventKind, ProgressEvent
from master_app.dispatch.lanes import Item, Lane
from master_app.metrics import observe_event

logger = logging.getLogger("master_app.dispatch.dispatcher")

_FAILED = (EventKind.FAILED, EventKind.CANCELLED)


class Announcer:
    """Builds and sends a run's :class:`ProgressEvent` s; a failing callback is logged."""

    def __init__(self, on_event: EventCallback | None, total: int) -> None:
        self.on_event = on_event
        self.total = total
        self.done = 0
        self.failed = 0

    def send(self, kind: EventKind, item: Item, lane: Lane | None, *, in_flight: int,
             message: str = "", duration_ms: float | None = None) -> None:
        """Announce ``kind`` for ``item`` (a final outcome is counted as it is announced)."""
        if kind is EventKind.COMPLETED:
            self.done += 1
        elif kind in _FAILED:
            self.failed += 1
        event = ProgressEvent(
            kind=kind, subtask_id=item.subtask.id, idx=item.idx,
            worker_id=lane.worker.id if lane else None,
            worker_url=lane.worker.vm_url if lane else None, attempt=item.attempts,
            message=message, duration_ms=duration_ms, done=self.done, failed=self.failed,
            total=self.total, in_flight=in_flight)
        observe_event(event)  # the master's Prometheus counters (master_app.metrics)
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            logger.exception("on_event callback failed for %s", event)
