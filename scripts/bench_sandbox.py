"""Benchmark: the p50 of a trivial ``python`` subtask (``RESULT = 6 * 7``).

Two rows: through one worker over HTTP (the worker started with the container's command,
on loopback, no token: ``NADG_ALLOW_INSECURE=1``), and the sandbox alone
(``worker_node.sandbox.run_python`` called in this process). The worker reports its
isolation level in ``/status``; the HTTP row names it. ``python -m scripts.bench_sandbox``
prints the rows on their own.
"""

from __future__ import annotations

import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
TRIVIAL = "RESULT = 6 * 7"
WARMUP = 3
RUNS = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_worker() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "NADG_ALLOW_INSECURE": "1", "NADG_REGISTER": "0",
           "NADG_CAPACITY": "1", "WORKER_ID": "bench-sandbox", "NADG_LOG_LEVEL": "WARNING",
           "NADG_SANDBOX_ALLOW_WEAK": "1"}
    env.pop("NADG_AUTH_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "worker_node.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=REPO_ROOT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bench worker exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a subprocess we started, outside the test suite
    proc.kill()
    raise RuntimeError("bench worker did not answer /health within 120 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


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
    proc, url = _start_worker()
    try:
        http_ms, level = _http_p50(url)
    finally:
        _stop(proc)
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
