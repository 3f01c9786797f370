"""Hedging: a second copy of a straggler on an idle worker; the first result wins.

A subtask is a straggler once its only copy has run for ``hedge_factor`` times the median
duration of the run's finished subtasks (and at least ``hedge_min_s``), counted only after
``hedge_min_samples`` have finished. Copies go only to a worker other than the one running
it, with a free slot and a closed breaker; the dispatcher hedges only when no real work is
waiting for those slots.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from database.models import CircuitState
from master_app.dispatch.lanes import Item, Lane, least_loaded
from master_app.settings import MasterSettings


class HedgePolicy:
    """When a running subtask deserves a second copy, and where it goes."""

    def __init__(self, settings: MasterSettings) -> None:
        self.settings = settings

    @property
    def enabled(self) -> bool:
        """Whether hedging is switched on (``hedging`` in the settings)."""
        return self.settings.hedging

    def threshold(self, durations: Sequence[float]) -> float | None:
        """Seconds after which a copy is a straggler; None while too few have finished."""
        if len(durations) < self.settings.hedge_min_samples:
            return None
        return max(self.settings.hedge_min_s,
                   self.settings.hedge_factor * statistics.median(durations))

    @staticmethod
    def is_straggler(item: Item, now: float, threshold: float) -> bool:
        """True when ``item`` has exactly one copy running and it has run past ``threshold``."""
        return (not item.done and len(item.copies) == 1
                and now - item.copies[0].started >= threshold)

    @staticmethod
    def lane_for(item: Item, lanes: Sequence[Lane], now: float) -> Lane | None:
        """The idle lane for a second copy of ``item``, or None when there is none."""
        running_on = item.copies[0].lane.worker.id
        idle = [lane for lane in lanes
                if lane.worker.id != running_on and lane.free(now, queued=False) > 0
                and lane.breaker.state is CircuitState.CLOSED]
        if not idle:
            return None
        return least_loaded(idle)
