"""NEXUS beside its peers, in one run: no-op throughput and round trip of Ray and Dask
distributed against NEXUS's full persisted path (every attempt and result written to the
store) on SQLite and on Postgres, with the ratio to Ray.

The peers are optional (``requirements-bench.txt``); they run in a subprocess of the
interpreter named by ``NADG_BENCH_PYTHON`` (a side virtualenv holding ``ray`` and
``dask[distributed]``), or of this interpreter when it can import them. Without them the
NEXUS rows are still measured and a note says the peers were skipped. Postgres is measured
when ``NADG_BENCH_DATABASE_URL`` (or the test database at 127.0.0.1:5432/test) answers.

Every system gets the same machine and the same shape of work: ``NOOPS`` no-op calls fanned
out over 2 local worker processes (4 slots each, and once with 16), with the master's
default pipeline (short subtasks queue on a worker while its slots run) and once with
each worker kept to its slots, then
``LATENCY_SAMPLES`` calls one at a time.

``python -m scripts.bench_peers`` prints the rows on their own.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from database.store import Store

logger = logging.getLogger(__name__)

NOOPS = 10_000
LATENCY_SAMPLES = 300
#: Slots per local worker (as in scripts.bench_dispatch). A batch holds at most a lane's
#: free slots, so the second figure, with :data:`WIDE_CAP` slots, shows what larger
#: batches buy.
CAP = 4
WIDE_CAP = 16
#: ``NADG_PIPELINE`` of the slots-only rows (the default pipelines short subtasks).
SLOTS_ONLY = 1
PG_URL = os.environ.get("NADG_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: Seconds the peers' subprocess may take (Ray starts in ~10 s on 2 cores).
PEERS_TIMEOUT_S = 600

Row = tuple[str, str, str]

#: The peers' benchmark, run by a Python that has ray and dask[distributed]. Prints JSON.
PEERS_SCRIPT = r"""
import json, statistics, sys, time
n, samples = int(sys.argv[1]), int(sys.argv[2])
out = {}

def noop(i):
    return i

try:
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    rnoop = ray.remote(noop)
    ray.get([rnoop.remote(i) for i in range(200)])  # warm the worker pool
    t = time.perf_counter(); ray.get([rnoop.remote(i) for i in range(n)])
    out["ray_rate"] = n / (time.perf_counter() - t)
    lat = []
    for i in range(samples):
        t = time.perf_counter(); ray.get(rnoop.remote(i)); lat.append(time.perf_counter() - t)
    out["ray_p50_ms"] = statistics.median(lat) * 1000
    ray.shutdown()
except ImportError as exc:
    out["ray_error"] = str(exc)

try:
    from dask.distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.gather(client.map(noop, range(200), pure=False))
        t = time.perf_counter(); client.gather(client.map(noop, range(n), pure=False))
        out["dask_rate"] = n / (time.perf_counter() - t)
        lat = []
        for i in range(samples):
            t = time.perf_counter(); client.submit(noop, i, pure=False).result()
            lat.append(time.perf_counter() - t)
        out["dask_p50_ms"] = statistics.median(lat) * 1000
except ImportError as exc:
    out["dask_error"] = str(exc)
print("PEERS " + json.dumps(out))
"""


def peers_python() -> str | None:
    """The interpreter that runs the peers: ``NADG_BENCH_PYTHON``, else this one when it
    can import ray or dask.distributed, else None (the peers are skipped)."""
    chosen = os.environ.get("NADG_BENCH_PYTHON")
    if chosen:
        return chosen
    if importlib.util.find_spec("ray") or importlib.util.find_spec("distributed"):
        return sys.executable
    return None


def run_peers(n: int = NOOPS, samples: int = LATENCY_SAMPLES) -> dict[str, float | str]:
    """Ray's and Dask's no-op rate and round trip p50, measured in a subprocess."""
    python = peers_python()
    if python is None:
        return {"skipped": "ray and dask[distributed] are not installed (pip install -r "
                           "requirements-bench.txt, or set NADG_BENCH_PYTHON to a Python "
                           "that has them)"}
    proc = subprocess.run([python, "-c", PEERS_SCRIPT, str(n), str(samples)],
                          capture_output=True, text=True, timeout=PEERS_TIMEOUT_S, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("PEERS "):
            found: dict[str, float | str] = json.loads(line[6:])
            return found
    return {"skipped": f"the peers' run failed (exit {proc.returncode}): "
                       f"{proc.stderr.strip()[-300:]}"}


@contextmanager
def postgres_store() -> Iterator[Store | None]:
    """A PostgresStore on a fresh schema of the bench database (None: not reachable)."""
    import psycopg

    from database.backends.postgres import PostgresStore

    schema = f"nadg_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        logger.warning("Postgres at %s unreachable: %s", PG_URL, exc)
        yield None
        return
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in PG_URL else "?"
        store = PostgresStore(f"{PG_URL}{sep}options=-csearch_path%3D{schema}", max_size=8)
        try:
            yield store
        finally:
            store.close()
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def _full_path(store: Store, token: str, n: int, batch_max: int | None,
                     pipeline: int | None = None) -> float:
    from master_app.planning import LocalPlanner
    from master_app.service import GridService
    from master_app.settings import MasterSettings

    settings = MasterSettings.model_validate({
        "NADG_AUTH_TOKEN": token, "NADG_HEDGING": False,
        **({} if pipeline is None else {"NADG_PIPELINE": pipeline}),
        **({} if batch_max is None else {"NADG_BATCH_MAX": batch_max})})
    service = GridService(store, settings)
    warm = service.submit("noop 50", LocalPlanner().plan("noop 50", None, []), None)
    await service.run(warm)
    start = time.perf_counter()
    command = f"noop {n}"
    task_id = service.submit(command, LocalPlanner().plan(command, None, []), None)
    outcome = await service.run(task_id)
    elapsed = time.perf_counter() - start
    if not outcome.ok:
        raise RuntimeError(f"the bench task failed: {outcome.error}")
    return n / elapsed


def nexus_rates(store: Store, n: int = NOOPS, *, cap: int = CAP, single: bool = True,
                pipeline: int | None = None) -> tuple[float, float]:
    """(batched, one per request) subtasks/s of ``noop n`` through GridService (create,
    dispatch, every attempt and result persisted, task finished) to 2 local workers of
    ``cap`` slots each (one per request: 0.0 when ``single`` is False); ``pipeline``: the
    master's ``NADG_PIPELINE`` for the batched run (None: the default)."""
    from master_app.local_grid import LocalGrid

    token = secrets.token_urlsafe(32)
    with LocalGrid(2, store, token, capacity=cap, env={"NADG_QUEUE_SIZE": "64"}):
        batched = asyncio.run(_full_path(store, token, n, None, pipeline))
        one = asyncio.run(_full_path(store, token, n // 4, 1)) if single else 0.0
    return batched, one


def _ratio(value: float, ray: float | None) -> str:
    return f"{value / ray:.2f}" if ray else "n/a"


def benchmarks() -> list[Row]:
    """Rows ``(benchmark, figure, unit)`` for ``python -m scripts.bench``."""
    from database.backends.sqlite import SqliteStore

    peers = run_peers()
    ray_rate = peers.get("ray_rate")
    ray = float(ray_rate) if isinstance(ray_rate, (int, float)) else None
    rows: list[Row] = []
    if "skipped" in peers:
        rows.append(("peers (Ray, Dask)", "skipped", str(peers["skipped"])))
    for key, label, unit in (("ray_rate", "Ray no-op rate, ray.get([noop.remote(i)...])",
                              "subtasks/s"),
                             ("ray_p50_ms", "Ray no-op round trip p50", "ms"),
                             ("dask_rate", "Dask distributed no-op rate (2 worker processes)",
                              "subtasks/s"),
                             ("dask_p50_ms", "Dask distributed no-op round trip p50", "ms")):
        if isinstance(peers.get(key), (int, float)):
            rows.append((label, f"{float(peers[key]):.2f}" if "ms" in key
                         else f"{float(peers[key]):.0f}", unit))
    if isinstance(peers.get("dask_rate"), (int, float)):
        rows.append(("Dask rate / Ray rate", _ratio(float(peers["dask_rate"]), ray), "x Ray"))
    with tempfile.TemporaryDirectory(prefix="nadg-peers-") as tmp:
        sqlite = SqliteStore(Path(tmp) / "registry.db")
        try:
            batched, single = nexus_rates(sqlite)
            wide, _ = nexus_rates(sqlite, cap=WIDE_CAP, single=False)
            slots, _ = nexus_rates(sqlite, single=False, pipeline=SLOTS_ONLY)
        finally:
            sqlite.close()
    rows += [
        (f"NEXUS full persisted path, SQLite (noop {NOOPS})", f"{batched:.0f}", "subtasks/s"),
        ("NEXUS full persisted path, SQLite / Ray", _ratio(batched, ray), "x Ray"),
        ("NEXUS full persisted path, SQLite, one subtask per request", f"{single:.0f}",
         "subtasks/s"),
        ("NEXUS one subtask per request (SQLite) / Ray", _ratio(single, ray), "x Ray"),
        (f"NEXUS full persisted path, SQLite, {WIDE_CAP} slots per worker (batches of up "
         f"to {WIDE_CAP})", f"{wide:.0f}", "subtasks/s"),
        (f"NEXUS full persisted path, SQLite, {WIDE_CAP} slots per worker / Ray",
         _ratio(wide, ray), "x Ray"),
        (f"NEXUS full persisted path, SQLite, slots only (NADG_PIPELINE={SLOTS_ONLY})",
         f"{slots:.0f}", "subtasks/s"),
        (f"NEXUS full persisted path, SQLite, NADG_PIPELINE={SLOTS_ONLY} / Ray",
         _ratio(slots, ray), "x Ray"),
    ]
    with postgres_store() as pg:
        if pg is None:
            rows.append(("NEXUS full persisted path, Postgres", "skipped",
                         f"no Postgres at {PG_URL}"))
        else:
            pg_batched, pg_single = nexus_rates(pg)
            pg_slots, _ = nexus_rates(pg, single=False, pipeline=SLOTS_ONLY)
            rows += [
                (f"NEXUS full persisted path, Postgres (noop {NOOPS})", f"{pg_batched:.0f}",
                 "subtasks/s"),
                ("NEXUS full persisted path, Postgres / Ray", _ratio(pg_batched, ray),
                 "x Ray"),
                ("NEXUS full persisted path, Postgres, one subtask per request",
                 f"{pg_single:.0f}", "subtasks/s"),
                ("NEXUS one subtask per request (Postgres) / Ray", _ratio(pg_single, ray),
                 "x Ray"),
                (f"NEXUS full persisted path, Postgres, slots only "
                 f"(NADG_PIPELINE={SLOTS_ONLY})", f"{pg_slots:.0f}", "subtasks/s"),
                (f"NEXUS full persisted path, Postgres, NADG_PIPELINE={SLOTS_ONLY} / Ray",
                 _ratio(pg_slots, ray), "x Ray"),
            ]
    return rows


def main() -> None:
    """Print this module's rows as the suite's Markdown table."""
    from scripts import bench

    bench.main(["--only", "scripts.bench_peers"])


if __name__ == "__main__":
    main()
