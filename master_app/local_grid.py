"""A local grid: N real workers as subprocesses on loopback, registered in a store.

Each worker starts exactly like the container (``python -m uvicorn worker_node.main:app
--host 127.0.0.1 --port P`` with ``NADG_AUTH_TOKEN`` and ``WORKER_ID``); the grid waits for
``/health``, registers the workers, and on exit stops them (SIGTERM, then SIGKILL) and
marks them offline. Used by ``--local N``, ``scripts/grid.py`` and the tests.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

from database.models import WorkerNode, WorkerStatus
from database.store import Store, StoreError
from master_app.settings import MasterSettings

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]


class GridError(RuntimeError):
    """A local worker could not be started."""


class GridCancelled(GridError):
    """The grid was told to stop while it was starting; what it had started is stopped."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalWorker:
    """One worker subprocess."""

    worker_id: str
    port: int
    proc: subprocess.Popen[bytes]
    node: WorkerNode | None = None

    @property
    def url(self) -> str:
        """Its base URL on loopback."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL its process group (a crash, not a shutdown)."""
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in ``timeout_s``."""
        if not self.alive:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()


class LocalGrid:
    """Start ``n`` workers, register them in ``store``; a context manager."""

    def __init__(
        self,
        n: int,
        store: Store,
        token: str,
        *,
        capacity: int = 2,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 120.0,
        name_prefix: str = "local",
        quiet: bool = True,
        cancel: threading.Event | None = None,
    ) -> None:
        if n < 1:
            raise GridError(f"a local grid needs at least 1 worker, got {n}")
        self.n = n
        self.store = store
        self.token = token
        self.capacity = capacity
        self.env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.name_prefix = name_prefix
        self.quiet = quiet
        # Set from a signal handler to stop a start in progress. Checked between steps, so
        # no exception ever lands inside Popen and orphans a half-started worker. Only read
        # here (is_set takes no lock), so the handler's set() cannot deadlock this thread.
        self.cancel = cancel or threading.Event()
        self.workers: list[LocalWorker] = []

    @property
    def nodes(self) -> list[WorkerNode]:
        """The registry records of the started workers."""
        return [w.node for w in self.workers if w.node is not None]

    def _spawn(self, i: int) -> LocalWorker:
        port = free_port()
        worker_id = f"{self.name_prefix}-{i + 1}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NADG_AUTH_TOKEN": self.token,
               "WORKER_ID": worker_id, "PORT": str(port), "NADG_REGISTER": "0",
               "NADG_CAPACITY": str(self.capacity), **self.env}
        out = subprocess.DEVNULL if self.quiet else None
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "worker_node.main:app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            cwd=REPO_ROOT, env=env, start_new_session=True, stdout=out, stderr=out)
        return LocalWorker(worker_id, port, proc)

    def start(self) -> LocalGrid:
        """Start every worker (in parallel), wait for health, register them."""
        self.workers = []
        try:
            for i in range(self.n):
                self._check_cancel()
                self.workers.append(self._spawn(i))
            deadline = time.monotonic() + self.startup_timeout_s
            with httpx.Client(timeout=2.0) as http:
                for worker in self.workers:
                    self._wait_healthy(http, worker, deadline)
                    self._check_cancel()
                    worker.node = self.store.register_worker(
                        worker.url, name=worker.worker_id, max_concurrency=self.capacity,
                        capabilities=["python", "embed", "classify", "generate", "train",
                                      "noop"])
        except BaseException:
            self.stop()
            raise
        logger.info("local grid up: %s", ", ".join(w.url for w in self.workers))
        return self

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise GridCancelled("told to stop while the grid was starting")

    def _wait_healthy(self, http: httpx.Client, worker: LocalWorker, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_cancel()
            if not worker.alive:
                raise GridError(f"worker {worker.worker_id} exited with {worker.proc.returncode}"
                                " while starting; run it by hand to see why: python -m uvicorn"
                                " worker_node.main:app")
            try:
                if http.get(worker.url + "/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # not cancel.wait(): a signal handler sets cancel
        raise GridError(f"worker {worker.worker_id} on {worker.url} did not answer /health in "
                        "time")

    def stop(self) -> None:
        """Stop every worker and mark it offline in the registry."""
        for worker in self.workers:
            if worker.alive:
                os.killpg(worker.proc.pid, signal.SIGTERM)
        for worker in self.workers:
            worker.stop()
            if worker.node is not None:
                try:
                    self.store.set_worker_status(worker.node.id, WorkerStatus.OFFLINE)
                except StoreError:
                    logger.warning("could not mark worker %s offline", worker.worker_id)
        logger.info("local grid stopped")

    def __enter__(self) -> LocalGrid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def store_for_run(local: int, settings: MasterSettings, stack: ExitStack, *,
                  prefix: str = "nadg-local-") -> Store:
    """The store a CLI run uses: the configured registry, or with ``local`` > 0 a throwaway
    SQLite registry holding only ``local`` workers started here (all closed by ``stack``).

    For a local grid, ``settings.auth_token`` is set to a random token unless one is set.
    """
    if not local:
        from database.config import open_store

        store = open_store()
        stack.callback(store.close)
        return store
    from database.backends.sqlite import SqliteStore

    settings.auth_token = settings.auth_token or secrets.token_urlsafe(24)
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix))
    throwaway: Store = SqliteStore(Path(tmp) / "registry.db")
    stack.callback(throwaway.close)
    sys.stderr.write(f"starting {local} local worker(s)...\n")
    cancel = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    # While workers start, Ctrl-C sets ``cancel`` instead of raising KeyboardInterrupt,
    # which could land inside Popen and leave a worker running (GridCancelled instead).
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set()) if in_main else None
    try:
        stack.enter_context(LocalGrid(local, throwaway, settings.auth_token, cancel=cancel))
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    return throwaway
