"""The service as the pages use it: a few thin functions over
:class:`~master_app.service.GridService`, shaped for :class:`~master_app.ui.run_state.RunRegistry`.

``prepare_run``, ``resume_run`` and ``rerun_task`` return ``(task_id, total, factory)``:
the factory is what a background run calls in its own thread and event loop,
``factory(on_event, cancel_event)``; it returns a :class:`FinishedRun` (the run's outcome
and its merged result, with the plan's one answer when the run completed).

The input table of a task started here is kept in memory (a few, newest first) so that
its results can be shown beside the input's own columns (:func:`input_of`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from database.leases import is_pull_url
from database.models import TaskDetail, TaskRecord
from database.store import Store
from master_app.service import (
    DataError,
    Dataset,
    DataSummary,
    GridService,
    Plan,
    PlanError,
    PlannedTask,
    SavedPlan,
    TaskOutcome,
    TaskResult,
    TaskView,
    live_workers,
    load_dataset,
    parse_plan,
    parse_plan_file,
    view_of,
)
from master_app.service.plans import data_note
from master_app.service.preview import plannable_operations, shards_editable
from master_app.service.preview import suggested_shards as _suggested_shards
from master_app.settings import MasterSettings

logger = logging.getLogger(__name__)



@dataclass
class FinishedRun:
    """What a background run hands back: how it ended and its merged result (with the
    plan's one answer, or why there is none)."""

    outcome: TaskOutcome
    result: TaskResult | None = None

    @property
    def detail(self) -> TaskDetail | None:
        """The finished task as the run left it (so the page does not read it again)."""
        return self.outcome.detail


#: ``(on_event, cancel) -> FinishedRun``: what :meth:`RunRegistry.start` runs.
Factory = Callable[[Callable[[Any], None], Any], Awaitable[FinishedRun]]

#: How many input tables are kept for :func:`input_of` (the newest tasks').
KEPT_INPUTS = 8
_inputs: OrderedDict[str, pd.DataFrame] = OrderedDict()
_inputs_lock = threading.Lock()


def remember_input(task_id: str, dataset: Dataset | pd.DataFrame | None) -> None:
    """Keep ``dataset``'s table for :func:`input_of` (the oldest beyond
    :data:`KEPT_INPUTS` are dropped)."""
    if dataset is None:
        return
    frame = dataset if isinstance(dataset, pd.DataFrame) else dataset.frame
    with _inputs_lock:
        _inputs[task_id] = frame
        _inputs.move_to_end(task_id)
        while len(_inputs) > KEPT_INPUTS:
            _inputs.popitem(last=False)


def input_of(task_id: str) -> pd.DataFrame | None:
    """The input table of a task started in this process (or a re-run of one), if kept."""
    with _inputs_lock:
        return _inputs.get(task_id)

__all__ = [
    "DataError", "FinishedRun", "PlanError", "TaskView", "input_of", "load_dataset",
    "parse_plan", "plan_download", "plan_task", "plan_upload", "remember_input",
    "plannable_operations", "prepare_run", "pull_lane_rows", "rerun_task", "resume_run",
    "shards_editable",
    "suggested_shards", "task_view",
]


def _service(store: Store, settings: MasterSettings) -> GridService:
    return GridService(store, settings)


def pull_lane_rows(task_id: str, store: Store, settings: MasterSettings) -> list[dict[str, Any]]:
    """Lane rows of the pull workers on ``task_id``. They lease their work from the store,
    so no dispatch event names them: their counts come from the store's progress snapshot
    (aggregate queries, read at a bounded rate)."""
    pulls = {w.id: w.vm_url for w in store.list_workers() if is_pull_url(w.vm_url)}
    if not pulls:
        return []
    progress = _service(store, settings).progress(task_id)
    return [{"worker": pulls[w.worker_id], "running": w.running, "done": w.completed,
             "failed": w.failed, "per second": None}
            for w in progress.workers if w.worker_id in pulls]


def plan_task(command: str, dataset: Dataset | None, requested: str | None, store: Store,
              settings: MasterSettings) -> PlannedTask:
    """Plan ``command`` over the live workers (as the CLI does)."""
    return _service(store, settings).plan(command, dataset, planner=requested)


def plan_download(command: str, plan: Plan, dataset: Dataset | None, planner: str = "",
                  summary: DataSummary | None = None) -> str:
    """The plan file of a plan shown before Run (what a Download button offers);
    ``summary``: the dataset's, when the caller already has it."""
    if summary is None and dataset is not None:
        summary = dataset.summary()
    return SavedPlan(command=command, plan=plan, planner=planner,
                     data=data_note(summary)).to_json()


def plan_upload(content: bytes, name: str, dataset: Dataset | None, store: Store,
                settings: MasterSettings) -> PlannedTask:
    """An uploaded plan file, validated and checked against ``dataset`` (no planner call);
    raises :class:`PlanError` saying what is wrong with it."""
    return _service(store, settings).planned(parse_plan_file(content, name), dataset)


def suggested_shards(plan: Plan, dataset: Dataset | None, store: Store) -> int:
    """How many subtasks the plan makes over the live workers (the shard editor's default)."""
    return _suggested_shards(plan, dataset, live_workers(store))


def _factory(service: GridService, task_id: str) -> Factory:
    async def run(on_event: Callable[[Any], None], cancel: Any) -> FinishedRun:
        outcome = await service.run(task_id, on_progress=on_event, cancel=cancel)
        if not outcome.ok or outcome.detail is None:
            return FinishedRun(outcome)  # no reduce step over a partial result
        try:
            return FinishedRun(outcome, await service.merged(outcome))
        except Exception:  # the results are still there: the page shows them without it
            logger.exception("task %s: the reduce step failed", task_id)
            return FinishedRun(outcome)

    return run


def prepare_run(command: str, plan: Plan, dataset: Dataset | None, store: Store,
                settings: MasterSettings) -> tuple[str, int, Factory]:
    """Persist a task; returns its id, its subtask count and the factory that runs it."""
    service = _service(store, settings)
    record = service.create(command, plan, dataset)
    remember_input(record.id, dataset)
    return record.id, record.subtask_count, _factory(service, record.id)


def resume_run(task: TaskRecord | str, store: Store,
               settings: MasterSettings) -> tuple[str, int, Factory]:
    """The same as :func:`prepare_run` for a task already in the store (resume): a
    cancelled or failed task is reopened, and only its subtasks without a result run."""
    service = _service(store, settings)
    task = service.reopen(task if isinstance(task, str) else task.id)
    return task.id, task.subtask_count, _factory(service, task.id)


def rerun_task(task_id: str, store: Store,
               settings: MasterSettings) -> tuple[str, int, Factory]:
    """A new task with the same command, plan and subtask payloads as ``task_id``."""
    service = _service(store, settings)
    record = service.rerun(task_id)
    remember_input(record.id, input_of(task_id))
    return record.id, record.subtask_count, _factory(service, record.id)


def task_view(task_id: str, store: Store, detail: TaskDetail | None = None) -> TaskView:
    """The merged results of a task (input order) and what failed (``detail`` when the
    caller already has it, as a finished run does: then the store is not read)."""
    return view_of(detail if detail is not None else store.get_task(task_id))
