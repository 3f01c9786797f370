"""The master's service layer: the one path every front-end takes.

The CLI (``master_app.cli``), the Streamlit pages (``master_app.ui``) and the scripts
import this package and plain models (``database.models``, ``master_app.intake``,
``master_app.planning.plan``), never the dispatcher, the job runner, a store backend or a
planner directly.

Where things live:

- :mod:`master_app.service.grid`: :class:`GridService` (plan, submit, run, resume,
  rerun, cancel, task view, live workers);
- :mod:`master_app.service.workers`: the one definition of a live worker;
- :mod:`master_app.service.runner`: durable execution (:class:`JobRunner`,
  :class:`TaskOutcome`): persist first, record each result as it lands, read once;
- :mod:`master_app.service.views`: :class:`TaskView`, a task as people look at it;
- :mod:`master_app.service.progress`: :class:`ProgressSnapshot`, a running task's counts
  for pages that watch it (``GridService.progress``), read at a bounded rate;
- :mod:`master_app.service.plans`: plans as files (``--save-plan`` / ``--plan``);
- :mod:`master_app.service.training`: federated training runs and deployment;
- :mod:`master_app.service.stores`: the store of a headless run (``--local N``);
- :mod:`master_app.service.errors`: the errors with a message for the person, and
  :data:`USER_ERRORS`, the tuple a front-end catches.
"""

from __future__ import annotations

from master_app.aggregate import TaskResult, aggregate
from master_app.dispatch import EventCallback, EventKind, ProgressEvent
from master_app.intake import DataError, Dataset, DataSummary, load_dataset
from master_app.planning.plan import Plan, PlanError, parse_plan
from master_app.service.errors import (
    USER_ERRORS,
    GridCancelled,
    GridError,
    NoLiveWorkers,
    PlanFileError,
    PlannerUnavailable,
    StoreError,
)
from master_app.service.grid import NO_LIVE_WORKERS, CancelResult, GridService, PlannedTask
from master_app.service.plans import SavedPlan, load_plan, parse_plan_file, save_plan
from master_app.service.progress import ProgressSnapshot, WorkerProgress
from master_app.service.runner import JobRunner, TaskOutcome
from master_app.service.views import TaskView, view_of
from master_app.service.workers import LIVE_STATUSES, can_run, count_live, is_live, live_workers

__all__ = [
    "LIVE_STATUSES", "NO_LIVE_WORKERS", "USER_ERRORS", "CancelResult", "DataError",
    "DataSummary", "Dataset", "EventCallback", "EventKind", "GridCancelled", "GridError",
    "GridService", "JobRunner", "NoLiveWorkers", "Plan", "PlanError", "PlanFileError",
    "PlannedTask", "PlannerUnavailable", "ProgressEvent", "ProgressSnapshot", "SavedPlan",
    "StoreError", "WorkerProgress",
    "TaskOutcome", "TaskResult", "TaskView", "aggregate", "can_run", "count_live",
    "is_live", "live_workers", "load_dataset", "load_plan", "parse_plan", "parse_plan_file",
    "save_plan", "view_of",
]
