"""Benchmarks of the dispatcher: no-op throughput and round trips, makespan against ideal.

1. No-op subtasks/s and p50/p99 round trip through the full dispatcher to 2 real local
   workers (subprocesses, as the container starts them), with and without batching.
2. Makespan of 1,000 subtasks of 50 ms each over 20 simulated workers (concurrency 1,
   in-process through ``httpx.MockTransport``) against the ideal 1000 x 50 ms / 20 = 2.5 s;
   efficiency = ideal / measured.

``python -m scripts.bench_dispatch`` prints the rows on their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from database.backends.sqlite import SqliteStore
from database.models import WorkerNode, WorkerStatus
from master_app.dispatch import Dispatcher
from master_app.local_grid import LocalGrid
from master_app.settings import MasterSettings
from nexus_common.protocol import Subtask
from nexus_common.signing import GridSigner

logger = logging.getLogger(__name__)

NOOPS = 2_000
LATENCY_SAMPLES = 500
SIM_SUBTASKS = 1_000
SIM_WORKERS = 20
SIM_SLEEP_S = 0.05
#: The simulated grid's secret (a real one is random; this one never leaves the process).
SIM_SECRET = "simulated-grid-secret-never-leaves-this-process"


def _noops(n: int, task: str, sleep_ms: float = 0.0) -> list[Subtask]:
    return [Subtask(id=f"{task}:{i}", task_id=task, kind="noop",
                    payload={"sleep_ms": sleep_ms}, timeout_s=60) for i in range(n)]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _local_workers(nodes: list[WorkerNode], token: str) -> list[tuple[str, str, str]]:
    rows = []
    batched = MasterSettings(NADG_AUTH_TOKEN=token, NADG_HEDGING=False)
    single = MasterSettings(NADG_AUTH_TOKEN=token, NADG_HEDGING=False, NADG_BATCH_MAX=1)
    async with Dispatcher(batched) as d:
        await d.run_subtasks(_noops(50, "warm"), nodes)
        report = await d.run_subtasks(_noops(NOOPS, "batched"), nodes)
        assert report.ok, report.failures
        rows.append(("no-op subtasks/s, dispatcher -> 2 local workers (batched)",
                     f"{NOOPS / report.duration_s:.0f}", "subtasks/s"))
    async with Dispatcher(single) as d:
        report = await d.run_subtasks(_noops(NOOPS, "single"), nodes)
        assert report.ok, report.failures
        rows.append(("no-op subtasks/s, dispatcher -> 2 local workers (one per request)",
                     f"{NOOPS / report.duration_s:.0f}", "subtasks/s"))
        # Round trips one at a time: no queueing in the figure.
        lat: list[float] = []
        for i in range(LATENCY_SAMPLES):
            one = await d.run_subtasks(_noops(1, f"lat{i}"), nodes[i % len(nodes):][:1])
            lat.extend(one.round_trips_ms)
        rows.append(("no-op round trip p50 (one subtask, full dispatcher)",
                     f"{statistics.median(lat):.2f}", "ms"))
        rows.append(("no-op round trip p99 (one subtask, full dispatcher)",
                     f"{_percentile(lat, 0.99):.2f}", "ms"))
    return rows


def bench_local_workers() -> list[tuple[str, str, str]]:
    """Throughput and round trips to 2 real local workers."""
    token = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="nadg-bench-") as tmp:
        store = SqliteStore(Path(tmp) / "registry.db")
        try:
            with LocalGrid(2, store, token, capacity=4, env={"NADG_QUEUE_SIZE": "64"}) as grid:
                return asyncio.run(_local_workers(grid.nodes, token))
        finally:
            store.close()


def _simulated_transport() -> httpx.MockTransport:
    signer = GridSigner(SIM_SECRET)
    # each simulated worker has one slot: what it is sent beyond that waits its turn (a
    # real worker's queue), so a pipelined master gains no more than the round trips
    slots: dict[str, asyncio.Lock] = {}

    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/auth/prove":  # a simulated worker holds its key
            return httpx.Response(200, json={"proof": signer.expected_proof(
                str(request.url), body["challenge"])})
        subtasks = body if isinstance(body, list) else [body]
        async with slots.setdefault(request.url.host, asyncio.Lock()):
            await asyncio.sleep(SIM_SLEEP_S * len(subtasks))
        results = [{"id": s["id"], "status": "completed", "output": {}} for s in subtasks]
        return httpx.Response(200, json=results if isinstance(body, list) else results[0])

    return httpx.MockTransport(handler)


async def _simulated() -> float:
    settings = MasterSettings(NADG_HEDGING=False, NADG_AUTH_TOKEN=SIM_SECRET)
    workers = [WorkerNode(id=i + 1, vm_url=f"http://sim-{i}.invalid", status=WorkerStatus.ACTIVE,
                          max_concurrency=1) for i in range(SIM_WORKERS)]
    async with httpx.AsyncClient(transport=_simulated_transport()) as http:
        d = Dispatcher(settings, http=http)
        start = time.monotonic()
        report = await d.run_subtasks(_noops(SIM_SUBTASKS, "sim"), workers)
        elapsed = time.monotonic() - start
    if not report.ok:
        raise RuntimeError(f"simulated run failed: {list(report.failures.values())[:3]}")
    return elapsed


def bench_makespan() -> list[tuple[str, str, str]]:
    """Makespan of 1,000 x 50 ms over 20 simulated workers against the ideal."""
    measured = asyncio.run(_simulated())
    ideal = SIM_SUBTASKS * SIM_SLEEP_S / SIM_WORKERS
    return [
        (f"makespan {SIM_SUBTASKS} x {SIM_SLEEP_S * 1000:.0f} ms over {SIM_WORKERS} simulated "
         "workers", f"{measured:.2f}", "s"),
        ("makespan ideal (work / workers)", f"{ideal:.2f}", "s"),
        ("dispatch efficiency (ideal / measured)", f"{ideal / measured:.3f}", "ratio"),
    ]


def benchmarks() -> list[tuple[str, str, str]]:
    """Rows ``(benchmark, figure, unit)`` for ``python -m scripts.bench``."""
    return bench_local_workers() + bench_makespan()


def main() -> None:
    """Print this module's rows as the suite's Markdown table."""
    from scripts import bench

    bench.main(["--only", "scripts.bench_dispatch"])


if __name__ == "__main__":
    main()
