"""One worker subprocess for a benchmark: started with the container's command on a free
loopback port, waited for on ``/health``, stopped at the end (shared by the bench modules)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from nexus_ops.health import probe_sync

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def bench_worker(env: Mapping[str, str], timeout_s: float = 120.0) -> Iterator[str]:
    """A worker on loopback (``uvicorn worker_node.main:app``) with ``env`` on top of this
    process's environment (a value of ``""`` removes the variable); yields its URL."""
    port = free_port()
    full = {**os.environ, "NADG_REGISTER": "0", "NADG_LOG_LEVEL": "WARNING"}
    for name, value in env.items():
        if value:
            full[name] = value
        else:
            full.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "worker_node.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=REPO_ROOT, env=full, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        with httpx.Client() as http:
            while not probe_sync(http, url, timeout_s=1.0).ok:
                if proc.poll() is not None:
                    raise RuntimeError(f"bench worker exited with {proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bench worker did not answer /health in {timeout_s:g} s")
                time.sleep(0.1)  # polling a subprocess we started, outside the test suite
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
