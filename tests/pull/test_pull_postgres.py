"""Pull workers on Postgres, as subprocesses: a task on pull workers only (one of them
killed with SIGKILL mid-run), and a mixed grid of push and pull workers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from database.models import NewSubtask, SubtaskStatus, TaskStatus
from master_app.service import GridService
from master_app.service.runner import TaskOutcome
from master_app.ui import jobs_api
from tests.pull.conftest import PullDb, PullProcess, master_settings, wait_registered
from tests.support.servers import serve_app
from tests.support.signing import GRID_SECRET
from tests.support.waiting import wait_until
from worker_node.main import create_app
from worker_node.settings import WorkerSettings


def run_in_thread(service: GridService, task_id: str) -> tuple[threading.Thread,
                                                               list[TaskOutcome]]:
    """``service.run(task_id)`` on its own event loop in a thread (the test watches)."""
    out: list[TaskOutcome] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(service.run(task_id))),
                              daemon=True)
    thread.start()
    return thread, out


def completions(db: PullDb) -> dict[str, int]:
    """Completed subtasks recorded per pull worker (``total_tasks`` of its row)."""
    return {str(url): int(n) for url, n in db.sql(
        "SELECT vm_url, total_tasks FROM worker_nodes WHERE vm_url LIKE 'pull://%%'")}


def test_a_task_completes_on_pull_workers_when_one_is_killed_mid_run(
        pull_db: PullDb, pull_workers: Callable[..., PullProcess]) -> None:
    db = pull_db
    env = {"DATABASE_URL": db.pull_dsn}
    a = pull_workers("kill-a", db.leases.enroll("kill-a"), env)
    b = pull_workers("kill-b", db.leases.enroll("kill-b"), env)
    wait_registered(db.store, "kill-a", a)
    wait_registered(db.store, "kill-b", b)
    task = db.store.create_task("pull only", {}, [
        NewSubtask(i, "noop", {"kind": "noop", "sleep_ms": 400, "echo": i}) for i in range(10)])
    service = GridService(db.store, master_settings(NADG_TASK_LEASE_S=5))
    thread, out = run_in_thread(service, task.id)
    # kill -9 worker a while it holds leases
    held = wait_until(lambda: [r[0] for r in db.sql(
        "SELECT id FROM subtasks WHERE task_id = %s AND lease_owner = 'pull:kill-a'"
        " AND status = 'running'", (task.id,))], timeout=60, what="kill-a to hold a lease")
    a.kill()
    thread.join(timeout=90)
    assert not thread.is_alive(), "the task did not finish after a pull worker was killed"
    outcome = out[0]
    assert outcome.ok, outcome.error
    detail = db.store.get_task(task.id)
    assert detail.task.status is TaskStatus.COMPLETED
    assert all(s.status is SubtaskStatus.COMPLETED for s in detail.subtasks)
    assert [s.result["output"]["echo"] for s in detail.subtasks
            if s.result] == list(range(10))
    b_id = db.store.find_worker("pull://kill-b").id  # type: ignore[union-attr]
    for sub in detail.subtasks:
        if sub.id in held:  # leased again after kill-a's lease expired, finished by kill-b
            assert sub.attempts >= 2 and sub.worker_id == b_id
    # each result recorded once: one counted completion per subtask, over both workers
    assert sum(completions(db).values()) == 10


def test_a_task_runs_on_push_and_pull_workers_together(
        pull_db: PullDb, pull_workers: Callable[..., PullProcess]) -> None:
    db = pull_db
    pull = pull_workers("mixed-pull", db.leases.enroll("mixed-pull"),
                        {"DATABASE_URL": db.pull_dsn}, capacity=2)
    pull_node = wait_registered(db.store, "mixed-pull", pull)
    before = completions(db)
    push_settings = WorkerSettings(NADG_AUTH_TOKEN=GRID_SECRET, WORKER_ID="mixed-push",
                                   NADG_CAPACITY=2, NADG_QUEUE_SIZE=8, NADG_REGISTER=False,
                                   NADG_TORCH_THREADS=1)
    code = "import time\ntime.sleep(0.2)\nRESULT = INPUT * 2"
    with serve_app(create_app(push_settings)) as url:
        push_node = db.store.add_worker(url, name="mixed-push", max_concurrency=2,
                                        capabilities=["python", "noop"])
        try:
            task = db.store.create_task("mixed", {}, [
                NewSubtask(i, "python", {"kind": "python", "code": code, "input": i})
                for i in range(8)])
            service = GridService(db.store, master_settings())
            outcome = asyncio.run(service.run(task.id))
        finally:
            db.store.remove_worker(push_node.id)
    assert outcome.ok, (outcome.error, outcome.failures, pull.output()[-2000:])
    detail = db.store.get_task(task.id)
    results = [s.result["output"]["result"] for s in detail.subtasks]  # type: ignore[index]
    assert results == [i * 2 for i in range(8)]
    by_worker: dict[Any, int] = {}
    for sub in detail.subtasks:
        by_worker[sub.worker_id] = by_worker.get(sub.worker_id, 0) + 1
    assert by_worker.get(pull_node.id, 0) >= 1, by_worker  # the pull worker took its share
    assert sum(n for w, n in by_worker.items() if w != pull_node.id) >= 1, by_worker
    after = completions(db)
    assert after["pull://mixed-pull"] - before.get("pull://mixed-pull", 0) == by_worker[
        pull_node.id]
    # the Run page's lanes show the pull worker beside the push one (from the store)
    rows = jobs_api.pull_lane_rows(task.id, db.store, master_settings())
    assert [(r["worker"], r["done"]) for r in rows] == [
        ("pull://mixed-pull", by_worker[pull_node.id])]
