"""The master's one path: :class:`GridService` plans, submits, runs, resumes, re-runs,
cancels and shows tasks, knows the live workers, and starts training runs. The CLI, the
Streamlit pages and the scripts call it and nothing deeper.

One service per process is fine (the Streamlit master shares one between sessions): it
holds no event loop. Each :meth:`GridService.run` makes its own dispatcher (its HTTP
client belongs to the caller's event loop) unless one was given, and registers the run
so that :meth:`GridService.cancel` can stop it from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from database.models import (
    NewSubtask,
    TaskDetail,
    TaskRecord,
    TaskStatus,
    WorkerNode,
)
from database.store import Store
from master_app.aggregate import TaskResult, aggregate
from master_app.dispatch import Dispatcher, EventCallback
from master_app.intake import Dataset
from master_app.planning import check_runnable, choose_planner, choose_synthesizer
from master_app.planning.plan import Plan
from master_app.service import training
from master_app.service.errors import NoLiveWorkers, PlanFileError, PlanNotRunnable
from master_app.service.plans import SavedPlan, data_note
from master_app.service.progress import ProgressReader, ProgressSnapshot
from master_app.service.runner import JobRunner, TaskOutcome, create_task
from master_app.service.views import TaskView, view_of
from master_app.service.workers import live_workers
from master_app.settings import MasterSettings

if TYPE_CHECKING:  # torch comes with these: imported when training runs
    from master_app.federated.deploy import Deployment
    from master_app.federated.rounds import RoundReport, TrainingResult
    from master_app.federated.session import Prepared

logger = logging.getLogger(__name__)

NO_LIVE_WORKERS = ("no live workers in the registry; add one with "
                   "`python -m database.manage_workers add URL` or use --local N")


@dataclass(frozen=True)
class PlannedTask:
    """A validated plan, the command it is for, which planner made it and why."""

    command: str
    plan: Plan
    planner: str
    reason: str

    def saved(self, data: Dataset | None) -> SavedPlan:
        """This plan as a plan file (:mod:`master_app.service.plans`)."""
        return SavedPlan(command=self.command, plan=self.plan, planner=self.reason,
                         data=data_note(data.summary() if data is not None else None))


def plan_with(settings: MasterSettings, command: str, data: Dataset | None, *,
              planner: str | None, workers: Sequence[WorkerNode]) -> PlannedTask:
    """Plan ``command`` for ``workers`` (no store needed: a CLI checks a command this way
    before it starts any local worker). Raises :class:`PlanError` saying why not."""
    chosen, reason = choose_planner(settings, planner)
    logger.info("planner: %s", reason)
    plan = chosen.plan(command, data.summary() if data is not None else None, workers)
    return PlannedTask(command=command, plan=plan, planner=chosen.name, reason=reason)


def saved_plan_for(saved: SavedPlan, data: Dataset | None,
                   command: str | None = None) -> PlannedTask:
    """A saved plan checked against ``data`` (and ``command``, when given, which must be
    the plan's own); raises :class:`PlanFileError` or :class:`PlanError` saying why not."""
    if command is not None and command.strip() != saved.command.strip():
        raise PlanFileError(f"the plan was made for {saved.command!r}, not {command!r}; "
                            "leave the command out to run the saved plan, or plan again.")
    plan = saved.plan.model_copy(deep=True)
    plan.check(data.summary() if data is not None else None)
    return PlannedTask(command=saved.command, plan=plan, planner="saved",
                       reason=f"saved plan ({saved.planner or 'planner unknown'})")


def plans_offline(settings: MasterSettings, planner: str | None) -> bool:
    """True when ``planner`` (or the default) is the local one, whose plan does not
    depend on the workers: it can be made before any worker starts."""
    return planner == "local" or (planner is None and not settings.gemini_api_key)


class CancelResult(StrEnum):
    """What :meth:`GridService.cancel` did."""

    SIGNALLED = "signalled"  # a run in this process was told to stop
    MARKED = "marked"  # nothing here ran it: the task and its open subtasks are cancelled
    FINISHED = "finished"  # the task had already ended; nothing changed


class GridService:
    """Plan, submit, run, resume, re-run, cancel and view tasks over one store."""

    def __init__(self, store: Store, settings: MasterSettings, *,
                 dispatcher: Dispatcher | None = None) -> None:
        self.store = store
        self.settings = settings
        self._dispatcher = dispatcher
        self._lock = threading.Lock()
        self._running: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}
        self._progress = ProgressReader(store)

    # -- workers ---------------------------------------------------------------------

    def live_workers(self, capability: str | None = None) -> list[WorkerNode]:
        """The registry's live workers (:mod:`master_app.service.workers`), optionally only
        those that can run ``capability``."""
        return live_workers(self.store, capability)

    # -- planning --------------------------------------------------------------------

    def plan(self, command: str, data: Dataset | None, *, planner: str | None = None,
             workers: Sequence[WorkerNode] | None = None) -> PlannedTask:
        """Plan ``command`` over the data's summary and the live workers.

        ``planner`` is ``"gemini"``, ``"local"`` or None (Gemini when a key is set).
        Raises :class:`~master_app.planning.plan.PlanError` saying why there is no plan.
        """
        workers = list(workers) if workers is not None else self.live_workers()
        return plan_with(self.settings, command, data, planner=planner, workers=workers)

    def planned(self, saved: SavedPlan, data: Dataset | None,
                command: str | None = None) -> PlannedTask:
        """A saved plan, checked against the data it is to run on (no planner call).

        ``command``, when given, must be the one the plan was made for.
        """
        return saved_plan_for(saved, data, command)

    # -- tasks -----------------------------------------------------------------------

    def check_runnable(self, plan: Plan, workers: Sequence[WorkerNode] | None = None) -> None:
        """Refuse ``plan`` before anything is stored when the live workers cannot run it.

        Raises :class:`PlanNotRunnable` listing each reason (a kind or model no live worker
        advertises; a Gemini synthesis with no key). With no live worker at all it says
        nothing: running then reports :class:`NoLiveWorkers`, and resume waits for one.
        """
        live = [w for w in (workers if workers is not None else self.live_workers())
                if w.status.live]
        if not live:
            return
        problems = check_runnable(plan, live, gemini_ready=bool(self.settings.gemini_api_key))
        if problems:
            raise PlanNotRunnable("the grid cannot run this plan: " + "; ".join(problems))

    def create(self, command: str, plan: Plan, data: Dataset | None,
               workers: Sequence[WorkerNode] | None = None) -> TaskRecord:
        """Check, shard and persist a task with all its subtasks (nothing is sent yet)."""
        self.check_runnable(plan, workers)
        return create_task(self.store, command, plan, data, workers)

    def submit(self, command: str, plan: Plan, data: Dataset | None,
               workers: Sequence[WorkerNode] | None = None) -> str:
        """Shard and persist a task with all its subtasks; returns the task id."""
        return self.create(command, plan, data, workers).id

    def rerun(self, task_id: str) -> TaskRecord:
        """A new task with the same command, plan and subtask payloads as ``task_id``.

        The payloads carry the task's data, so a re-run needs no upload.
        """
        old = self.store.get_task(task_id)
        return self.store.create_task(
            old.task.command, old.task.plan,
            [NewSubtask(idx=s.idx, kind=s.kind, payload=s.payload) for s in old.subtasks])

    async def run(self, task_id: str, on_progress: EventCallback | None = None,
                  cancel: asyncio.Event | None = None,
                  deadline_s: float | None = None) -> TaskOutcome:
        """Run ``task_id`` to its end (only subtasks without a result are sent).

        The task is read from the store once; :attr:`TaskOutcome.detail` carries it,
        finished, for :meth:`result_of`. ``cancel`` (or :meth:`cancel`) stops it.
        """
        cancel = cancel or asyncio.Event()
        self._register(task_id, cancel)
        try:
            async with JobRunner(self.store, self.settings,
                                 dispatcher=self._dispatcher) as runner:
                return await runner.run(task_id, on_event=on_progress, cancel=cancel,
                                        deadline_s=deadline_s)
        finally:
            self._unregister(task_id, cancel)

    async def resume(self, on_progress: EventCallback | None = None,
                     cancel: asyncio.Event | None = None) -> list[TaskOutcome]:
        """Run every unfinished task to its end, oldest first (after a master restart).

        Raises :class:`NoLiveWorkers`, touching nothing, when there are unfinished tasks but
        no live worker. One task that cannot resume does not stop the others.
        """
        async with JobRunner(self.store, self.settings, dispatcher=self._dispatcher) as runner:
            return await runner.resume_unfinished(on_event=on_progress, cancel=cancel)

    async def serve(self, stop: asyncio.Event, *, poll_s: float = 1.0) -> int:
        """Adopt and run tasks no live master holds (a dead master's, after its lease)
        until ``stop`` is set; returns how many runs started (:func:`leases.serve`)."""
        from master_app.service import leases

        async def run_one(task_id: str) -> TaskOutcome:
            return await self.run(task_id)

        return await leases.serve(self.store, run_one, stop, lease_s=self.settings.task_lease_s,
                                  poll_s=poll_s)

    def require_live_workers(self, workers: Sequence[WorkerNode]) -> None:
        """Raise :class:`NoLiveWorkers` (saying what to do) when ``workers`` is empty."""
        if not workers:
            raise NoLiveWorkers(NO_LIVE_WORKERS)

    def unfinished_tasks(self) -> list[TaskRecord]:
        """Tasks pending or running, oldest first."""
        return self.store.list_unfinished_tasks()

    def reopen(self, task_id: str) -> TaskRecord:
        """Make a cancelled or failed task resumable: back to pending with every result it
        has kept, so that the next :meth:`run` sends only the subtasks without one. A
        completed, pending or running task is returned as it is."""
        task = self.store.get_task(task_id).task
        if task.status in (TaskStatus.CANCELLED, TaskStatus.FAILED):
            task = self.store.set_task_status(task_id, TaskStatus.PENDING)
            logger.info("task %s reopened to resume", task_id)
        return task

    def is_running_here(self, task_id: str) -> bool:
        """True while a :meth:`run` of ``task_id`` is going in this process."""
        with self._lock:
            return task_id in self._running

    def cancel(self, task_id: str) -> CancelResult:
        """Stop ``task_id``.

        A run in this process is told to stop (subtasks in flight finish or time out, no
        new ones start; the run marks the task cancelled). A task nothing here runs (left
        behind by a master that stopped) is marked cancelled in the store with its open
        subtasks, so that nobody resumes it. A finished task is left as it is.
        """
        with self._lock:
            running = self._running.get(task_id)
        if running is not None:
            loop, event = running
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed as the run ended
                pass
            return CancelResult.SIGNALLED
        task = self.store.get_task(task_id).task
        if task.status.finished:
            return CancelResult.FINISHED
        open_ = self.store.cancel_unfinished_subtasks(task_id, "cancelled")  # one statement
        self.store.set_task_status(task_id, TaskStatus.CANCELLED, error="cancelled")
        logger.info("task %s cancelled in the store (%d open subtasks)", task_id, open_)
        return CancelResult.MARKED

    def progress(self, task_id: str) -> ProgressSnapshot:
        """A compact snapshot of ``task_id`` (counts and per-worker summaries, never its
        rows), read from the store at most every ``ProgressReader.min_interval_s`` however
        many pages ask; shares no lock with the run (:mod:`master_app.service.progress`)."""
        return self._progress.snapshot(task_id)

    # -- results ---------------------------------------------------------------------

    def task_view(self, task_id: str, detail: TaskDetail | None = None) -> TaskView:
        """A task's record, merged results and failures (``detail`` if already read)."""
        return view_of(detail if detail is not None else self.store.get_task(task_id))

    async def merged(self, outcome: TaskOutcome) -> TaskResult:
        """The merged result of a finished run with its one answer (the plan's reduce step:
        concat, table, a python reducer on a worker, or a Gemini synthesis), made from the
        detail the run handed on. The answer is kept with the task, so asking again
        neither dispatches nor calls Gemini twice."""
        from master_app.reduce import merged_result

        synthesizer = choose_synthesizer(self.settings)
        if self._dispatcher is not None:
            return await merged_result(self.store, outcome.task_id, dispatch=self._dispatcher,
                                       synthesizer=synthesizer, detail=outcome.detail,
                                       timeout_s=self.settings.subtask_timeout_s)
        async with Dispatcher(self.settings, registry=self.store) as dispatch:
            return await merged_result(self.store, outcome.task_id, dispatch=dispatch,
                                       synthesizer=synthesizer, detail=outcome.detail,
                                       timeout_s=self.settings.subtask_timeout_s)

    @staticmethod
    def result_of(outcome: TaskOutcome) -> TaskResult:
        """The results table of a finished run (no reduce step: see :meth:`merged`), from
        the detail the run handed on."""
        if outcome.detail is None:
            raise ValueError(f"the outcome of task {outcome.task_id} carries no detail")
        return aggregate(outcome.detail)

    # -- training --------------------------------------------------------------------

    def trainable_workers(self) -> list[WorkerNode]:
        """Live workers that can run ``train`` subtasks."""
        return training.trainable_workers(self.store)

    async def train(self, prepared: Prepared, workers: Sequence[WorkerNode],
                    checkpoint_dir: Path,
                    on_round: Callable[[RoundReport], None] | None = None) -> TrainingResult:
        """Run every round of a prepared training job (:func:`training.train`)."""
        return await training.train(prepared, workers, self.settings.auth_token,
                                    checkpoint_dir, on_round)

    def start_training(self, prepared: Prepared, workers: Sequence[WorkerNode],
                       checkpoint_dir: Path, reports: list[RoundReport]) -> training.JobFactory:
        """The training run as a background job (``(on_event, cancel) -> result``) that
        appends each round's report to ``reports`` (:func:`training.training_job`)."""
        return training.training_job(prepared, workers, self.settings.auth_token,
                                     checkpoint_dir, reports)

    def start_deploy(self, workers: Sequence[WorkerNode], weights: Any, prepared: Prepared,
                     *, models_dir: Path,
                     metrics: dict[str, Any] | None = None) -> training.JobFactory:
        """Publishing a trained text head as a background job (:func:`training.deploy_job`)."""
        return training.deploy_job(self.store, workers, weights, prepared,
                                   self.settings.auth_token, models_dir=models_dir,
                                   metrics=metrics)

    async def deploy(self, workers: Sequence[WorkerNode], weights: Any, prepared: Prepared,
                     *, models_dir: Path, metrics: dict[str, Any] | None = None) -> Deployment:
        """Publish a trained text head to ``workers`` (:func:`training.deploy`)."""
        return await training.deploy(self.store, workers, weights, prepared,
                                     self.settings.auth_token, models_dir=models_dir,
                                     metrics=metrics)

    # -- internals -------------------------------------------------------------------

    def _register(self, task_id: str, cancel: asyncio.Event) -> None:
        with self._lock:
            self._running[task_id] = (asyncio.get_running_loop(), cancel)

    def _unregister(self, task_id: str, cancel: asyncio.Event) -> None:
        with self._lock:
            if self._running.get(task_id, (None, None))[1] is cancel:
                del self._running[task_id]
