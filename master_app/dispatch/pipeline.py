"""Pipelining (``NADG_PIPELINE``): how many subtasks per slot a worker is sent.

Above 1, the rest of a batch waits in the worker's queue while its slots run, so a slot
that ends starts the next subtask without a round trip. A worker starts a subtask's clock
when it queues it, so the depth applies only while the run's subtasks are short (at most
:data:`ITEM_MAX_S` on a moving average of each subtask's share of its request's time). A
worker that answers busy while it runs subtasks of this run has a full queue, not a fault:
its lane keeps to its slots from then on and is not counted as down.
"""

from __future__ import annotations

from collections.abc import Sequence

from master_app.dispatch.lanes import Lane
from master_app.settings import MasterSettings

#: Seconds (moving average) a subtask may take for the pipeline to apply.
ITEM_MAX_S = 0.1


class PipelinePolicy:
    """The depth each lane gets, from the master's settings and the results so far."""

    def __init__(self, settings: MasterSettings) -> None:
        self.wanted = settings.pipeline
        #: Moving average of a subtask's share of its request's time (None before one).
        self.item_s: float | None = None

    def observe(self, seconds: float) -> None:
        """Fold in one completed subtask's share of its request's time."""
        self.item_s = seconds if self.item_s is None else 0.8 * self.item_s + 0.2 * seconds

    def depth(self) -> int:
        """Subtasks per slot: ``NADG_PIPELINE`` while subtasks are short, else 1."""
        short = self.item_s is not None and self.item_s <= ITEM_MAX_S
        return self.wanted if short else 1

    def apply(self, lanes: Sequence[Lane]) -> None:
        """Set each lane's depth before a launch (lanes with a full queue keep to 1)."""
        if self.wanted <= 1:
            return
        depth = self.depth()
        for lane in lanes:
            lane.depth = 1 if lane.queue_full else depth

    def overfilled(self, lane: Lane, sent: int) -> bool:
        """Whether a busy answer to ``sent`` subtasks came while the worker runs others of
        this run: then its queue is full (this run filled it), and the lane keeps to its
        slots from now on."""
        if self.wanted <= 1 or lane.in_flight <= sent:
            return False
        lane.queue_full = True
        lane.depth = 1
        return True
