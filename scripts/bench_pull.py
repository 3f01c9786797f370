"""Benchmarks of the pull path (outbound-only workers leasing work from Postgres).

1. Throughput: no-op subtasks/s of one task run by the master on 2 pull workers
   (``python -m worker_node pull`` subprocesses, capacity 4 each) and no push worker:
   every subtask is claimed (``FOR UPDATE SKIP LOCKED``), run and completed in the store.
2. Wake-up latency of an idle pull worker: from the moment work is released to the
   moment a worker that sat idle in ``LISTEN nadg_work`` has claimed it (both instants on
   the database's clock), p50 and max over several rounds.

Needs Postgres: ``NADG_BENCH_DATABASE_URL`` (default the test database on 127.0.0.1);
everything happens in a schema made for the run and dropped after.
``python -m scripts.bench_pull`` prints the rows on their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from database.backends.postgres import PostgresStore
from database.leases import LeaseStore, lease_store
from database.models import NewSubtask, TaskStatus
from master_app.service import GridService
from master_app.settings import MasterSettings

logger = logging.getLogger(__name__)

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
SUBTASKS = 400
WORKERS = 2
CAPACITY = 4
WAKE_ROUNDS = 10
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The master's grid secret for this run (no push worker uses it; settings require one).
SECRET = "bench-pull-grid-secret-never-leaves-this-run"


def _schema_dsn(dsn: str, schema: str) -> str:
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def _schema(dsn: str) -> Iterator[str]:
    name = f"nadg_bench_pull_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
        try:
            yield _schema_dsn(dsn, name)
        finally:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


@contextmanager
def _pull_workers(dsn: str, leases: LeaseStore, store: PostgresStore,
                  tmp: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    drop = ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_ANON_KEY", "NADG_AUTH_TOKEN")
    try:
        for i in range(WORKERS):
            name = f"bench-{i}"
            env = {k: v for k, v in os.environ.items() if k not in drop}
            env.update(DATABASE_URL=dsn, NADG_WORKER_CREDENTIAL=leases.enroll(name),
                       NADG_CAPACITY=str(CAPACITY), NADG_QUEUE_SIZE="0", WORKER_ID=name,
                       NADG_TORCH_THREADS="1", HOME=str(tmp), NADG_LOG_LEVEL="WARNING")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "worker_node", "pull", "--idle-poll-s", "5"],
                cwd=REPO_ROOT, env=env, start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=(tmp / f"{name}.log").open("wb")))
        deadline = time.monotonic() + 120
        while len([w for w in store.list_workers() if w.vm_url.startswith("pull://")]) < WORKERS:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("pull workers did not start; see their logs in " + str(tmp))
            time.sleep(0.1)
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _throughput(store: PostgresStore) -> float:
    settings = MasterSettings(NADG_AUTH_TOKEN=SECRET, GEMINI_API_KEY=None)
    task = store.create_task("bench pull", {}, [NewSubtask(i, "noop", {"kind": "noop"})
                                                for i in range(SUBTASKS)])
    start = time.perf_counter()
    outcome = asyncio.run(GridService(store, settings).run(task.id))
    seconds = time.perf_counter() - start
    if not outcome.ok:
        raise RuntimeError(f"the pull benchmark task did not complete: {outcome.error}")
    return SUBTASKS / seconds


def _db_now(store: PostgresStore) -> Any:
    with store._tx() as q:
        return q.rows("SELECT clock_timestamp() AS now")[0]["now"]


def _wake_latencies(store: PostgresStore, leases: LeaseStore) -> list[float]:
    out = []
    for n in range(WAKE_ROUNDS):
        task = store.create_task(f"wake {n}", {}, [NewSubtask(0, "noop", {"kind": "noop"})])
        leases.hold_subtasks(task.id, None, "master:bench", 3600)
        store.set_task_status(task.id, TaskStatus.RUNNING)
        time.sleep(1.0)  # the workers are idle, waiting in LISTEN
        released = _db_now(store)
        leases.release_subtasks(task.id, [f"{task.id}:0"], "master:bench")
        deadline = time.monotonic() + 30
        while (started := store.get_task(task.id).subtasks[0].started_at) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("no idle pull worker claimed the released subtask")
            time.sleep(0.005)
        out.append((started - released).total_seconds() * 1000)
        store.set_task_status(task.id, TaskStatus.COMPLETED)
    return out


def measure(dsn: str | None = None) -> dict[str, float]:
    """Run both benchmarks against Postgres; returns the figures."""
    dsn = dsn or os.environ.get("NADG_BENCH_DATABASE_URL", DEFAULT_DSN)
    with _schema(dsn) as schema_dsn, tempfile.TemporaryDirectory() as tmp:
        store = PostgresStore(schema_dsn, max_size=4)
        try:
            leases = lease_store(store)
            assert leases is not None
            with _pull_workers(schema_dsn, leases, store, Path(tmp)):
                wake = _wake_latencies(store, leases)
                rate = _throughput(store)
        finally:
            store.close()
    return {"subtasks_per_s": rate, "wake_p50_ms": statistics.median(wake),
            "wake_max_ms": max(wake)}


def benchmarks() -> list[tuple[str, str, str]]:
    """Rows for ``python -m scripts.bench``."""
    m = measure()
    return [
        (f"pull path: {SUBTASKS} no-op subtasks, {WORKERS} pull workers x {CAPACITY}",
         f"{m['subtasks_per_s']:.0f}", "subtasks/s"),
        ("pull path: idle worker wake-up (LISTEN/NOTIFY), p50",
         f"{m['wake_p50_ms']:.1f}", "ms"),
        ("pull path: idle worker wake-up, max of 10", f"{m['wake_max_ms']:.1f}", "ms"),
    ]


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(measure(), indent=2))
