"""Live workers, as every part of the master asks for them.

A worker is *live* when the registry says it is ``active`` or ``busy``: it answers and
takes work. ``offline`` workers did not answer their last pings; ``draining`` ones were
told by an operator to take no new work. The statuses are written down once, beside the
status values themselves (:data:`database.models.LIVE_STATUSES`), so that the operator
side and the planner can ask too without importing the master's service; the master
asks here. The dispatcher's circuit breakers then decide, run by run, which live
workers actually get subtasks.
"""

from __future__ import annotations

from collections.abc import Iterable

from database.models import LIVE_STATUSES, WorkerNode
from database.store import Registry

__all__ = ["LIVE_STATUSES", "can_run", "count_live", "is_live", "live_workers"]


def is_live(worker: WorkerNode) -> bool:
    """True when ``worker`` may be given work (see :data:`LIVE_STATUSES`)."""
    return worker.status.live


def can_run(worker: WorkerNode, capability: str | None) -> bool:
    """True when ``worker`` advertises ``capability`` (or advertises nothing: an older
    worker that never said what it runs is given the benefit of the doubt)."""
    return capability is None or not worker.capabilities or capability in worker.capabilities


def live_workers(registry: Registry, capability: str | None = None) -> list[WorkerNode]:
    """The live workers of ``registry`` (one read), optionally only those that can run
    ``capability`` (a subtask kind such as ``"train"``)."""
    return [w for w in registry.list_workers(LIVE_STATUSES) if can_run(w, capability)]


def count_live(workers: Iterable[WorkerNode]) -> int:
    """How many of ``workers`` are live."""
    return sum(1 for w in workers if is_live(w))
