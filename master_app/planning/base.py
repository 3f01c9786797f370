"""The planner interface: ``plan(command, summary, workers) -> Plan``.

Exceptions::

    PlanError              (ValueError) a plan that cannot run, or a command not understood
    └── PlannerUnavailable the planning service could not answer (network, quota, 5xx)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from database.models import WorkerNode
from master_app.intake import DataSummary
from master_app.planning.plan import Plan, PlanError


class PlannerUnavailable(PlanError):
    """The planning service did not answer usefully (after its retries)."""


@runtime_checkable
class Planner(Protocol):
    """Turns a command and a data summary into a validated :class:`Plan`."""

    name: str

    def plan(self, command: str, summary: DataSummary | None,
             workers: Sequence[WorkerNode]) -> Plan:
        """A plan that passed :meth:`Plan.check`; raises :class:`PlanError` otherwise."""
        ...
