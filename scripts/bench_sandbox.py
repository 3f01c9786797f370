"""Benchmark: the p50 of a trivial ``python`` subtask (``RESULT = 6 * 7``).

Two rows: through one worker over HTTP (the worker started with the container's command,
on loopback, no token: ``NADG_ALLOW_INSECURE=1``), and the sandbox alone
(``worker_node.sandbox.run_python`` called in this process). The worker reports its
isolation level in ``/status``; the HTTP row names it. ``python -m scripts.bench_sandbox``
prints the rows on their own.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

import httpx

from scripts.bench_processes import bench_worker

logger = logging.getLogger(__name__)

TRIVIAL = "RESULT = 6 * 7"
WARMUP = 3
RUNS = 30


def _http_p50(url: str) -> tuple[float, str]:
    """p50 in ms of the trivial subtask over HTTP, and the worker's isolation level."""
    times: list[float] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(WARMUP + RUNS):
            start = time.perf_counter()
            body = client.post("/execute", json={
                "id": f"b{i}", "task_id": "bench", "kind": "python",
                "payload": {"code": TRIVIAL}, "timeout_s": 20}).json()
            elapsed = (time.perf_counter() - start) * 1000
            if body.get("status") != "completed" or body["output"]["result"] != 42:
                raise RuntimeError(f"bench subtask failed: {body}")
            if i >= WARMUP:
                times.append(elapsed)
        status = client.get("/status").json()
    level = (status.get("sandbox") or {}).get("level", "unreported")
    return statistics.median(times), str(level)


def _direct_p50() -> float:
    """p50 in ms of ``run_python`` on the trivial code, in this process."""
    from worker_node.sandbox import SandboxLimits, run_python

    times: list[float] = []
    for i in range(WARMUP + RUNS):
        start = time.perf_counter()
        outcome = run_python(TRIVIAL, None, SandboxLimits(timeout_s=20))
        elapsed = (time.perf_counter() - start) * 1000
        if outcome.result != 42:
            raise RuntimeError(f"sandbox run failed: {outcome.stderr[-500:]}")
        if i >= WARMUP:
            times.append(elapsed)
    return statistics.median(times)


def bench() -> list[dict[str, Any]]:
    """Both p50 figures; one dict per row."""
    with bench_worker({"NADG_ALLOW_INSECURE": "1", "NADG_AUTH_TOKEN": "", "NADG_CAPACITY": "1",
                       "WORKER_ID": "bench-sandbox", "NADG_SANDBOX_ALLOW_WEAK": "1"}) as url:
        http_ms, level = _http_p50(url)
    direct_ms = _direct_p50()
    return [
        {"benchmark": f"trivial python subtask p50 via worker HTTP (sandbox: {level})",
         "value": http_ms, "unit": "ms"},
        {"benchmark": "trivial python run p50, sandbox only (run_python)",
         "value": direct_ms, "unit": "ms"},
    ]


def benchmarks() -> list[tuple[str, str, str]]:
    """Rows ``(benchmark, figure, unit)`` for the Markdown table of ``scripts.bench``."""
    return [(str(row["benchmark"]), f"{row['value']:.1f}", str(row["unit"]))
            for row in bench()]


def main() -> None:
    """Print this module's rows as the suite's Markdown table."""
    from scripts import bench

    bench.main(["--only", "scripts.bench_sandbox"])


if __name__ == "__main__":
    main()
