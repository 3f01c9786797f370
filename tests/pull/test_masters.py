"""Several masters on one Postgres: ``python -m master_app serve`` twice, one killed with
SIGKILL mid-run. Every task completes, and no task runs on two masters at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

from database.models import NewSubtask, SubtaskStatus, TaskStatus
from tests.pull.conftest import STRIPPED, PullDb
from tests.support.servers import REPO_ROOT, serve_app
from tests.support.signing import GRID_SECRET
from tests.support.waiting import wait_until
from worker_node.main import create_app
from worker_node.settings import WorkerSettings

LEASE_S = 2


def start_master(db: PullDb, log: Path) -> subprocess.Popen[bytes]:
    """``python -m master_app serve`` on ``db`` with a short task lease."""
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED and k != "GEMINI_API_KEY"}
    env.update(DATABASE_URL=db.dsn, NADG_AUTH_TOKEN=GRID_SECRET, HOME=str(log.parent),
               NADG_TASK_LEASE_S=str(LEASE_S), NADG_BACKOFF_BASE_S="0.01",
               NADG_BACKOFF_MAX_S="0.1", NADG_SUBTASK_TIMEOUT_S="30", PYTHONUNBUFFERED="1")
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "master_app", "-v", "serve",
                                 "--poll-s", "0.2"], cwd=REPO_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _serving(log: Path) -> bool:
    return "serving" in log.read_text(errors="replace")


def held_by(db: PullDb, pid: int) -> set[str]:
    """Unfinished tasks whose lease the master with ``pid`` holds now."""
    return {str(r[0]) for r in db.sql(
        "SELECT id FROM tasks WHERE status IN ('pending', 'running') AND lease_owner LIKE %s",
        (f"master:%:{pid}:%",))}


def test_two_masters_one_killed_every_task_completes_once(pull_db: PullDb,
                                                         tmp_path: Path) -> None:
    db = pull_db
    settings = WorkerSettings(NADG_AUTH_TOKEN=GRID_SECRET, WORKER_ID="masters-push",
                              NADG_CAPACITY=4, NADG_QUEUE_SIZE=32, NADG_REGISTER=False,
                              NADG_TORCH_THREADS=1)
    procs: list[subprocess.Popen[bytes]] = []
    with serve_app(create_app(settings)) as url:
        db.store.add_worker(url, name="masters-push", max_concurrency=4,
                            capabilities=["noop"])
        try:
            a = start_master(db, tmp_path / "a.log")
            b = start_master(db, tmp_path / "b.log")
            procs += [a, b]
            for log in (tmp_path / "a.log", tmp_path / "b.log"):
                wait_until(partial(_serving, log), timeout=60, what=f"{log.name} to serve")
            # 8 tasks, at most 4 running per master: both masters must take some
            tasks = [db.store.create_task(f"t{n}", {}, [
                NewSubtask(i, "noop", {"kind": "noop", "sleep_ms": 400, "echo": [n, i]})
                for i in range(3)]).id for n in range(8)]
            wait_until(lambda: held_by(db, a.pid) and held_by(db, b.pid), timeout=60,
                       what="both masters to run tasks")
            a_held = held_by(db, a.pid)
            stop(a, signal.SIGKILL)
            wait_until(lambda: all(t.status.finished for t in db.store.list_tasks(limit=50)),
                       timeout=60, what="every task to finish after master a died")
        finally:
            for proc in procs:
                stop(proc)
    logs = "\n".join(p.read_text(errors="replace")[-1500:] for p in tmp_path.glob("*.log"))
    for task_id in tasks:
        detail = db.store.get_task(task_id)
        assert detail.task.status is TaskStatus.COMPLETED, (task_id, logs)
        assert all(s.status is SubtaskStatus.COMPLETED and s.result for s in detail.subtasks)
        if task_id not in a_held:  # never run twice: one attempt per subtask
            assert [s.attempts for s in detail.subtasks] == [1, 1, 1], (task_id, logs)
    assert "adopting task" in (tmp_path / "b.log").read_text()
