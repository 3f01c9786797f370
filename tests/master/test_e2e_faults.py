"""End to end with real worker subprocesses: a SIGKILLed worker, a stalled worker, all dead.

The three tests share one grid of three workers and run in file order: the stall test
stops and resumes a worker, the kill test kills one, the last test kills the rest.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from database.backends.sqlite import SqliteStore
from database.models import SubtaskStatus, TaskStatus
from master_app.aggregate import aggregate
from master_app.dispatch import EventCallback, EventKind, ProgressEvent
from master_app.local_grid import LocalGrid, LocalWorker
from master_app.planning import LocalPlanner
from master_app.service import JobRunner, TaskOutcome
from tests.master.conftest import fast_settings

TOKEN = "e2e-faults-grid-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SqliteStore, LocalGrid]]:
    store = SqliteStore(Path(tmp_path_factory.mktemp("faults")) / "registry.db")
    with LocalGrid(3, store, TOKEN, capacity=2) as grid:
        yield store, grid
    store.close()


def alive(grid: LocalGrid) -> list[LocalWorker]:
    return [w for w in grid.workers if w.alive]


async def run_job(store: SqliteStore, command: str, on_event: EventCallback | None = None,
                  **overrides: object) -> tuple[str, TaskOutcome, float]:
    settings = fast_settings(NADG_AUTH_TOKEN=TOKEN, **overrides)
    async with JobRunner(store, settings) as runner:
        plan = LocalPlanner().plan(command, None, [])
        task_id = runner.submit(command, plan, None)
        start = time.monotonic()
        outcome = await runner.run(task_id, on_event=on_event)
        return task_id, outcome, time.monotonic() - start


async def test_stalled_worker_is_hedged_around(grid: tuple[SqliteStore, LocalGrid]) -> None:
    store, g = grid
    victim = alive(g)[0]
    stopped: list[bool] = []

    def on_event(e: ProgressEvent) -> None:
        if e.kind is EventKind.COMPLETED and e.done >= 10 and not stopped:
            os.killpg(victim.proc.pid, signal.SIGSTOP)  # stalls: accepts, never answers
            stopped.append(True)

    try:
        task_id, outcome, elapsed = await run_job(store, "noop 60 sleep 50", on_event)
    finally:
        os.killpg(victim.proc.pid, signal.SIGCONT)
    assert stopped and outcome.status is TaskStatus.COMPLETED
    assert outcome.report is not None and outcome.report.hedges >= 1
    # The stall would last the subtask timeout (30 s) plus transport slack.
    assert elapsed < 10, f"hedging should finish well before the stall ends; took {elapsed}"
    table = aggregate(store.get_task(task_id)).table
    assert table["output"].tolist() == list(range(60))


async def test_sigkilled_worker_mid_job_every_subtask_once(
        grid: tuple[SqliteStore, LocalGrid]) -> None:
    store, g = grid
    victim = alive(g)[0]
    retried_on: set[str | None] = set()

    def on_event(e: ProgressEvent) -> None:
        if e.kind is EventKind.COMPLETED and e.done >= 40 and victim.alive:
            victim.kill()
        if e.kind is EventKind.RETRIED:
            retried_on.add(e.worker_url)

    task_id, outcome, _ = await run_job(store, "noop 200 sleep 20", on_event)
    assert not victim.alive
    assert outcome.status is TaskStatus.COMPLETED, outcome.error
    detail = store.get_task(task_id)
    assert detail.count(SubtaskStatus.COMPLETED) == 200
    assert [s.idx for s in detail.subtasks] == list(range(200))
    assert [(s.result or {})["output"]["echo"] for s in detail.subtasks] == list(range(200))
    assert outcome.report is not None and outcome.report.retries >= 1
    assert victim.url in retried_on
    winners = {s.worker_id for s in detail.subtasks[150:]}
    assert victim.node is not None and victim.node.id not in winners


async def test_all_workers_dead_task_fails_with_reason(
        grid: tuple[SqliteStore, LocalGrid]) -> None:
    store, g = grid
    for worker in alive(g):
        worker.kill()
    task_id, outcome, elapsed = await asyncio.wait_for(
        run_job(store, "noop 20", NADG_ALL_DOWN_GRACE_S=0.5), timeout=30)
    assert outcome.status is TaskStatus.FAILED
    assert outcome.error is not None and "20 of 20 subtasks failed" in outcome.error
    assert "no worker could run it" in outcome.error or "ConnectError" in outcome.error
    assert elapsed < 15
    assert store.get_task(task_id).task.status is TaskStatus.FAILED
