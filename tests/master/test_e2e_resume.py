"""The master stopped mid-task and started again resumes and ends as an uninterrupted run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from database.backends.sqlite import SqliteStore
from database.models import SubtaskStatus, TaskStatus
from master_app.aggregate import aggregate
from master_app.dispatch import EventKind, ProgressEvent
from master_app.local_grid import LocalGrid
from master_app.planning import LocalPlanner
from master_app.service import JobRunner
from tests.master.conftest import fast_settings
from tests.support.servers import REPO_ROOT
from tests.support.waiting import wait_until

TOKEN = "e2e-resume-grid-secret-0123456789abcdef"
COMMAND = "noop 80 sleep 40"


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SqliteStore, Path]]:
    path = Path(tmp_path_factory.mktemp("resume")) / "registry.db"
    store = SqliteStore(path)
    with LocalGrid(2, store, TOKEN, capacity=2):
        yield store, path
    store.close()


@pytest.fixture(scope="module")
def reference(grid: tuple[SqliteStore, Path]) -> list[object]:
    """The result table of an uninterrupted run."""
    store, _ = grid

    async def go() -> str:
        async with JobRunner(store, fast_settings(NADG_AUTH_TOKEN=TOKEN)) as runner:
            task_id = runner.submit(COMMAND, LocalPlanner().plan(COMMAND, None, []), None)
            assert (await runner.run(task_id)).ok
            return task_id

    task_id = asyncio.run(go())
    return aggregate(store.get_task(task_id)).table["output"].tolist()


async def test_runner_cancelled_mid_task_then_resumed(
        grid: tuple[SqliteStore, Path], reference: list[object]) -> None:
    store, _ = grid
    settings = fast_settings(NADG_AUTH_TOKEN=TOKEN)
    async with JobRunner(store, settings) as runner:
        task_id = runner.submit(COMMAND, LocalPlanner().plan(COMMAND, None, []), None)
        reached = asyncio.Event()

        def on_event(e: ProgressEvent) -> None:
            if e.kind is EventKind.COMPLETED and e.done >= 20:
                reached.set()

        run = asyncio.create_task(runner.run(task_id, on_event=on_event))
        await asyncio.wait_for(reached.wait(), timeout=30)
        run.cancel()  # the master dies: no chance to mark anything
        with pytest.raises(asyncio.CancelledError):
            await run
    detail = store.get_task(task_id)
    done_before = {s.id: s.result for s in detail.subtasks
                   if s.status is SubtaskStatus.COMPLETED}
    assert detail.task.status is TaskStatus.RUNNING and 20 <= len(done_before) < 80

    async with JobRunner(store, settings) as runner:
        outcomes = await runner.resume_unfinished()
    assert [o.task_id for o in outcomes] == [task_id] and outcomes[0].ok
    report = outcomes[0].report
    assert report is not None and len(report.results) == 80 - len(done_before), \
        "only subtasks without a result were dispatched again"
    after = store.get_task(task_id)
    assert all(after.subtasks[int(i.rsplit(':', 1)[1])].result == r
               for i, r in done_before.items()), "earlier results are kept, not redone"
    assert aggregate(after).table["output"].tolist() == reference


def test_cli_killed_mid_task_then_resume_subcommand(
        grid: tuple[SqliteStore, Path], reference: list[object]) -> None:
    store, path = grid
    env = {**os.environ, "NADG_REGISTRY": str(path), "NADG_AUTH_TOKEN": TOKEN,
           "DATABASE_URL": "", "SUPABASE_URL": "", "GEMINI_API_KEY": "", "GOOGLE_API_KEY": ""}
    before = {t.id for t in store.list_tasks(limit=100)}
    proc = subprocess.Popen([sys.executable, "-m", "master_app", "run", COMMAND,
                             "--no-progress"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        def progressed() -> str | None:
            new = [t for t in store.list_tasks(limit=100) if t.id not in before]
            if new and store.get_task(new[0].id).count(SubtaskStatus.COMPLETED) >= 15:
                return new[0].id
            return None

        task_id = wait_until(progressed, timeout=60, what="the CLI task to make progress")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert store.get_task(task_id).task.status is TaskStatus.RUNNING
    done = subprocess.run([sys.executable, "-m", "master_app", "resume", "--json",
                           "--no-progress"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert task_id in done.stdout
    detail = store.get_task(task_id)
    assert detail.task.status is TaskStatus.COMPLETED
    assert aggregate(detail).table["output"].tolist() == reference
