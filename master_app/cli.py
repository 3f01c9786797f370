"""``python -m master_app``: run one job headless, resume unfinished ones.

    python -m master_app run "COMMAND" [--data FILE] [--planner gemini|local] [--local N]
                                       [--json] [--out FILE]
    python -m master_app resume [--json]

Progress goes to stderr, the result to stdout. Exit status: 0 completed, 1 the task failed,
2 bad input (one clear line, no traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from database import StoreError, open_store
from master_app.aggregate import TaskResult, aggregate
from master_app.events import ProgressEvent
from master_app.intake import DataError, load_dataset
from master_app.jobs import JobRunner, NoLiveWorkers, TaskOutcome
from master_app.local_grid import GridCancelled, GridError, store_for_run
from master_app.planning import PlanError, choose_planner
from master_app.settings import MasterSettings

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ProgressBar:
    """A one-line progress bar on stderr, redrawn on each event."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = ""

    def __call__(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * event.fraction)
        line = (f"\r[{'#' * filled}{'.' * (width - filled)}] {event.finished}/{event.total}"
                f"  done {event.done}  failed {event.failed}  running {event.in_flight}")
        if line != self.last:
            sys.stderr.write(line)
            sys.stderr.flush()
            self.last = line

    def close(self) -> None:
        """End the line."""
        if self.enabled and self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m master_app",
                                     description="NEXUS Grid master, headless.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="plan and run one job")
    run.add_argument("task", help='what to do, e.g. "classify as billing / bug / feature"')
    run.add_argument("--data", type=Path, help="CSV, TXT (one item a line) or JSONL file")
    run.add_argument("--planner", choices=["gemini", "local"], default=None)
    run.add_argument("--local", type=int, default=0, metavar="N",
                     help="start N local workers for this run (stopped after)")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument("--out", type=Path, help="write the table (.csv/.json/.jsonl/.npy)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=cmd_run)

    resume = sub.add_parser("resume", help="finish tasks a stopped master left unfinished")
    resume.add_argument("--json", action="store_true")
    resume.add_argument("--no-progress", action="store_true")
    resume.set_defaults(handler=cmd_resume)

    # Hook for the federated-training subcommand (master_app/cli_train.py).
    _add_train(sub)
    return parser


def _add_train(sub: Any) -> None:
    """The learning engineer's ``train`` subcommand: ``cli_train.register(subparsers)``."""
    try:
        cli_train = importlib.import_module("master_app.cli_train")
    except ModuleNotFoundError:
        return
    register = getattr(cli_train, "register", None)
    if register is not None:
        register(sub)


def _print_result(result: TaskResult, outcome: TaskOutcome, as_json: bool,
                  out: Path | None) -> str | None:
    """Print the result; returns a one-line error when ``out`` could not be written."""
    files: list[str] = []
    save_error = None
    if out:
        try:
            files = [str(p) for p in result.save(out)]
        except OSError as exc:
            save_error = f"could not write {out}: {exc.strerror or exc}; give a writable path."
    if as_json:
        payload = {**result.summary(), "completed": outcome.completed, "total": outcome.total,
                   "error": outcome.error, "files": files,
                   "table": json.loads(result.table.to_json(orient="records"))}
        sys.stdout.write(json.dumps(payload, default=str) + "\n")
        return save_error
    with_cols = [c for c in result.table.columns if c != "error" or
                 result.table["error"].notna().any()]
    sys.stdout.write(result.table[with_cols].to_string(index=False, max_rows=60,
                                                       max_colwidth=60) + "\n")
    if result.label_counts:
        sys.stdout.write("label counts: " + ", ".join(
            f"{k}={v}" for k, v in result.label_counts.items()) + "\n")
    sys.stdout.write(f"task {outcome.task_id}: {outcome.status.value} "
                     f"({outcome.completed}/{outcome.total} subtasks)\n")
    for path in files:
        sys.stdout.write(f"wrote {path}\n")
    return save_error


async def _run_task(runner: JobRunner, task_id: str, progress: ProgressBar) -> TaskOutcome:
    cancel = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, cancel.set)
    except (NotImplementedError, RuntimeError):
        pass
    try:
        return await runner.run(task_id, on_event=progress, cancel=cancel)
    finally:
        progress.close()


def cmd_run(args: argparse.Namespace, settings: MasterSettings) -> int:
    """``run``: load data, plan, submit, dispatch, aggregate, print."""
    dataset = load_dataset(args.data, max_bytes=settings.max_upload_bytes,
                           max_rows=settings.max_rows) if args.data else None
    with ExitStack() as stack:
        store = store_for_run(args.local, settings, stack)
        runner = JobRunner(store, settings)
        workers = runner.live_workers()
        planner, why = choose_planner(settings, args.planner)
        logger.info("planner: %s", why)
        plan = planner.plan(args.task, dataset.summary() if dataset else None, workers)
        sys.stderr.write(f"plan ({why}): {plan.explanation or plan.operation.value}\n")
        if args.out is not None and args.out.suffix == ".npy" and plan.operation != "embed":
            raise PlanError(f"--out {args.out}: only embed results make a .npy matrix; this "
                            f"task is {plan.operation.value}, so use .csv, .json or .jsonl.")
        if not workers:
            raise GridError("no live workers in the registry; add one with "
                            "`python -m database.manage_workers add URL` or use --local N")
        task_id = runner.submit(args.task, plan, dataset, workers)
        sys.stderr.write(f"task {task_id}\n")
        progress = ProgressBar(not args.no_progress)
        outcome = asyncio.run(_run_and_close(runner, task_id, progress))
        result = aggregate(store.get_task(task_id))
        save_error = _print_result(result, outcome, args.json, args.out)
        if save_error:
            sys.stderr.write(f"error: {save_error}\n")
        if not outcome.ok:
            sys.stderr.write(f"error: task {outcome.status.value}: {outcome.error}\n")
            return EXIT_FAILED
        return EXIT_FAILED if save_error else EXIT_OK


async def _run_and_close(runner: JobRunner, task_id: str, progress: ProgressBar) -> TaskOutcome:
    try:
        return await _run_task(runner, task_id, progress)
    finally:
        await runner.aclose()


def cmd_resume(args: argparse.Namespace, settings: MasterSettings) -> int:
    """``resume``: run every unfinished task in the registry to its end."""
    store = open_store()
    try:
        runner = JobRunner(store, settings)
        progress = ProgressBar(not args.no_progress)

        async def go() -> list[TaskOutcome]:
            try:
                return await runner.resume_unfinished(on_event=progress)
            finally:
                progress.close()
                await runner.aclose()

        outcomes = asyncio.run(go())
        for outcome in outcomes:
            if args.json:
                result = aggregate(store.get_task(outcome.task_id))
                sys.stdout.write(json.dumps({**result.summary(), "completed": outcome.completed,
                                             "total": outcome.total}, default=str) + "\n")
            else:
                sys.stdout.write(f"task {outcome.task_id}: {outcome.status.value} "
                                 f"({outcome.completed}/{outcome.total})"
                                 + (f": {outcome.error}" if outcome.error else "") + "\n")
        if not outcomes and not args.json:
            sys.stdout.write("nothing to resume\n")
        return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILED
    finally:
        store.close()


def _settings_error(exc: ValidationError) -> str:
    """One line naming each environment variable whose value is not valid."""
    parts = [f"{'.'.join(map(str, err['loc'])) or '?'}={err.get('input')!r}: {err['msg']}"
             for err in exc.errors()]
    return "bad setting in the environment: " + "; ".join(parts) + "; fix or unset it."


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=os.environ.get("NADG_LOG_LEVEL", logging.getLevelName(level)),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = MasterSettings()
    except ValidationError as exc:
        sys.stderr.write(f"error: {_settings_error(exc)}\n")
        return EXIT_USAGE
    try:
        code: int = args.handler(args, settings)
        return code
    except (KeyboardInterrupt, GridCancelled):
        sys.stderr.write("interrupted\n")
        return 130
    except (DataError, PlanError, GridError, StoreError, NoLiveWorkers) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
