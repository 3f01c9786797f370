"""Real servers on loopback for tests: an ASGI app in a uvicorn thread, or a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tests.support.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def serve_app(app: Any, port: int | None = None, health_path: str = "/health") -> Iterator[str]:
    """Run an ASGI app under uvicorn in a thread on loopback; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: server.started, timeout=30, what=f"uvicorn on {url}")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class WorkerProcess:
    """A worker started exactly as the container starts it: ``uvicorn worker_node.main:app``."""

    def __init__(self, port: int | None = None, env: Mapping[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> WorkerProcess:
        """Start and wait until ``/health`` answers."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "worker_node.main:app",
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO_ROOT, env=self.env, start_new_session=True,
        )
        wait_until(lambda: self.proc is not None and (self.proc.poll() is not None
                                                      or _healthy(self.url + "/health")),
                   timeout=timeout, what=f"worker on {self.url}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker on {self.url} exited with {self.proc.returncode}")
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash, not a shutdown)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not stop in time."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
