"""``run`` and ``resume``: one job headless, and the tasks a stopped master left.

    python -m master_app run "COMMAND" [--data FILE] [--planner gemini|local] [--local N]
                                       [--json] [--out FILE] [--no-progress]
                                       [--save-plan FILE [--plan-only]]
    python -m master_app run --plan FILE [--data FILE] [--local N] [--json] [--out FILE]
    python -m master_app resume [--json] [--no-progress]

``--save-plan FILE`` writes the validated plan, then runs it (``--plan-only``: stop after
saving, exit 0). ``--plan FILE`` runs a saved plan with no planner call; the command may
then be left out (if given, it must be the one the plan was made for).

Bad input is found before any local worker starts: the ``--out`` path, the data file, a
saved plan, and (with the local planner) the command and its column.

Progress goes to stderr, the result to stdout. Exit status (:class:`nexus_common.cli.ExitCode`):
0 completed, 1 the task failed (or its result could not be written), 2 bad input,
3 the registry cannot be reached, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from contextlib import ExitStack
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from master_app.cli.common import fail, load_settings, one_line_errors, say, setup_logging
from master_app.cli.output import print_result, print_resumed, save_result
from master_app.cli.progress import Progress, make_progress
from master_app.metrics import get_metrics, serving_metrics
from master_app.service import (
    GridService,
    Plan,
    PlanError,
    PlannedTask,
    TaskOutcome,
    TaskResult,
    load_dataset,
    load_plan,
    save_plan,
)
from master_app.service.grid import plan_with, plans_offline, saved_plan_for
from master_app.service.stores import open_configured_store, store_for_run
from nexus_common.cli import ExitCode


class PlannerName(StrEnum):
    """Which planner ``--planner`` asks for."""

    gemini = "gemini"
    local = "local"


def _what(plan: Plan) -> str:
    """A few words on what the plan does: its operation, or how many subtasks."""
    return plan.operation.value if plan.operation is not None else f"{len(plan.subtasks)} subtasks"


async def _run(service: GridService, task_id: str,
               progress: Progress) -> tuple[TaskOutcome, TaskResult]:
    """Run the task, then its reduce step; Ctrl-C cancels it cleanly (the outcome says
    cancelled)."""
    cancel = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, cancel.set)
    except (NotImplementedError, RuntimeError):  # not the main thread, or no signals
        pass
    try:
        outcome = await service.run(task_id, on_progress=progress, cancel=cancel)
    finally:
        progress.close()
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):
            pass
    return outcome, await service.merged(outcome)


def check_out_path(out: Path) -> None:
    """Refuse an ``--out`` path the result could not be written to, before anything runs
    (exit 2): a folder, a path under a file, a folder or file that is not writable."""
    if out.is_dir():
        raise fail(f"--out {out} is a folder; give a file name, e.g. {out / 'result.csv'}.")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the folders missing are made when the result is saved
    if not parent.is_dir():
        raise fail(f"--out {out}: {parent} is a file, not a folder; give a path in a folder.")
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise fail(f"--out {out} cannot be written (no permission); give a writable path.")


def _check_planned(planned: PlannedTask, out: Path | None) -> None:
    """Say the plan; refuse an ``--out`` kind the plan cannot make (exit 2)."""
    what = _what(planned.plan)
    say(f"plan ({planned.reason}): {planned.plan.explanation or what}")
    if out is not None and out.suffix == ".npy" and planned.plan.operation != "embed":
        raise PlanError(f"--out {out}: only embed results make a .npy matrix; this task "
                        f"is {what}, so use .csv, .json or .jsonl.")


def run(
    task: Annotated[str | None, typer.Argument(
        help='what to do, e.g. "classify as billing / bug / feature" (optional with --plan)',
        show_default=False)] = None,
    data: Annotated[Path | None, typer.Option(
        help="CSV, TXT (one item a line) or JSONL file", show_default=False)] = None,
    planner: Annotated[PlannerName | None, typer.Option(
        help="default: gemini when GEMINI_API_KEY is set, else local",
        show_default=False)] = None,
    local: Annotated[int, typer.Option(
        metavar="N", min=0, help="start N local workers for this run (stopped after)")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    out: Annotated[Path | None, typer.Option(
        help="write the table (.csv/.json/.jsonl/.npy)", show_default=False)] = None,
    no_progress: Annotated[bool, typer.Option(
        "--no-progress", help="no progress display")] = False,
    save_plan_to: Annotated[Path | None, typer.Option(
        "--save-plan", metavar="FILE", help="write the validated plan as JSON, then run it",
        show_default=False)] = None,
    plan_only: Annotated[bool, typer.Option(
        "--plan-only", help="with --save-plan: stop after saving the plan")] = False,
    plan_file: Annotated[Path | None, typer.Option(
        "--plan", metavar="FILE", help="run a plan saved with --save-plan (no planner call)",
        show_default=False)] = None,
    metrics_port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="serve the master's Prometheus metrics on this port while it "
        "runs (or NADG_METRICS_PORT)", show_default=False)] = None,
) -> None:
    """Plan and run one job."""
    setup_logging()
    with one_line_errors(), serving_metrics(metrics_port):
        code = _run_command(task, data, planner, local, as_json, out, no_progress,
                            save_plan_to, plan_only, plan_file)
    raise typer.Exit(code)


def _run_command(task: str | None, data: Path | None, planner: PlannerName | None,
                 local: int, as_json: bool, out: Path | None, no_progress: bool,
                 save_plan_to: Path | None, plan_only: bool, plan_file: Path | None) -> int:
    if task is None and plan_file is None:
        raise fail('give the task, e.g. run "classify as A / B", or a saved plan with '
                   "--plan FILE.")
    if plan_only and save_plan_to is None:
        raise fail("--plan-only needs --save-plan FILE (where to write the plan).")
    if plan_file is not None and planner is not None:
        raise fail("--plan runs a saved plan without a planner; leave out --planner.")
    if out is not None:
        check_out_path(out)
    settings = load_settings()
    dataset = load_dataset(data, max_bytes=settings.max_upload_bytes,
                           max_rows=settings.max_rows) if data else None
    saved = load_plan(plan_file) if plan_file is not None else None
    requested = planner.value if planner else None
    workers_here = 0 if plan_only else local
    planned = None
    if saved is not None:  # checked against the data before anything starts
        planned = saved_plan_for(saved, dataset, task)
    elif workers_here and plans_offline(settings, requested):
        # The local planner needs no worker: an unknown command or a wrong column is
        # found before the local workers start (seconds), not after.
        planned = plan_with(settings, task or "", dataset, planner=requested, workers=[])
    if planned is not None:
        _check_planned(planned, out)
    with ExitStack() as stack:
        if workers_here:
            say(f"starting {workers_here} local worker(s)...")
        store = store_for_run(workers_here, settings, stack)
        get_metrics().attach_store(store)  # its gauges, while --metrics-port serves
        stack.callback(get_metrics().attach_store, None)
        service = GridService(store, settings)
        workers = service.live_workers()
        if planned is None:
            planned = service.plan(task or "", dataset, planner=requested, workers=workers)
            _check_planned(planned, out)
        if save_plan_to is not None:
            say(f"saved the plan to {save_plan(save_plan_to, planned.saved(dataset))}")
            if plan_only:
                return ExitCode.OK
        service.require_live_workers(workers)
        task_id = service.submit(planned.command, planned.plan, dataset, workers)
        say(f"task {task_id}")
        outcome, result = asyncio.run(_run(service, task_id,
                                           make_progress(not no_progress)))
        files, save_error = save_result(result, out)
        print_result(result, outcome, files, as_json)
        if save_error:
            say(f"error: {save_error}")
        if not outcome.ok:
            say(f"error: task {outcome.status.value}: {outcome.error}")
            return ExitCode.FAILED
        if result.answer is not None and not result.answer.ok:
            say(f"error: no merged answer: {result.answer.error}")
            return ExitCode.FAILED
        return ExitCode.FAILED if save_error else ExitCode.OK


def resume(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON line per task")] = False,
    no_progress: Annotated[bool, typer.Option(
        "--no-progress", help="no progress display")] = False,
) -> None:
    """Finish tasks a stopped master left unfinished."""
    setup_logging()
    with one_line_errors():
        code = _resume_command(as_json, no_progress)
    raise typer.Exit(code)


def _resume_command(as_json: bool, no_progress: bool) -> int:
    settings = load_settings()
    with ExitStack() as stack:
        store = open_configured_store()
        stack.callback(store.close)
        service = GridService(store, settings)
        progress = make_progress(not no_progress)

        async def go() -> list[TaskOutcome]:
            try:
                return await service.resume(on_progress=progress)
            finally:
                progress.close()

        outcomes = asyncio.run(go())
        for outcome in outcomes:
            result = None
            if as_json:
                result = (service.result_of(outcome) if outcome.detail is not None
                          else service.task_view(outcome.task_id).result)
            print_resumed(outcome, result, as_json)
        if not outcomes and not as_json:
            sys.stdout.write("nothing to resume\n")
        return ExitCode.OK if all(o.ok for o in outcomes) else ExitCode.FAILED
