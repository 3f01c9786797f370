"""A local grid: N real workers as subprocesses on loopback, registered in a store.

Each worker starts exactly like the container (``python -m uvicorn worker_node.main:app
--host 127.0.0.1 --port P`` with ``NADG_AUTH_TOKEN`` and ``WORKER_ID``); the grid waits for
``/health``, registers the workers, and on exit stops them (SIGTERM, then SIGKILL) and
marks them offline. Workers die with the process that started them even when it is killed
with SIGKILL (``PR_SET_PDEATHSIG`` on Linux, see :func:`die_with_parent`), and
:meth:`LocalGrid.respawn` restarts one on its old port (the watchdog of
:mod:`master_app.worker_watchdog` uses it). Used by ``--local N`` (through
:func:`master_app.service.stores.store_for_run`), ``scripts/grid.py`` and the tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from database.models import WorkerNode, WorkerStatus
from database.store import Store, StoreError
from nexus_ops.health import probe_sync

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Linux ``prctl`` option: the signal a process gets when its parent thread dies.
PR_SET_PDEATHSIG = 1
#: Seconds uvicorn gives in-flight requests when a worker is told to stop.
GRACEFUL_S = 3
#: The file in a throwaway registry's folder naming the process that owns it.
OWNER_FILE = "owner.json"


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


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get ``sig`` when its parent dies (even by
    SIGKILL), and exit at once if the parent is already gone.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere it does nothing. The kernel ties
    the signal to the *thread* that forked the child, so spawn from a thread that lives as
    long as the workers should (the main thread, or the watchdog's).
    """
    parent = os.getpid()
    try:
        libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
        prctl = getattr(libc, "prctl", None)
    except OSError:
        prctl = None

    def preexec() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


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

    def _spawn(self, i: int, port: int | None = None) -> LocalWorker:
        port = port or free_port()
        worker_id = f"{self.name_prefix}-{i + 1}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NADG_AUTH_TOKEN": self.token,
               "WORKER_ID": worker_id, "PORT": str(port), "NADG_REGISTER": "0",
               "NADG_CAPACITY": str(self.capacity), **self.env}
        out = subprocess.DEVNULL if self.quiet else None
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "worker_node.main:app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning",
             "--timeout-graceful-shutdown", str(GRACEFUL_S)],
            cwd=REPO_ROOT, env=env, start_new_session=True, stdout=out, stderr=out,
            preexec_fn=die_with_parent())
        return LocalWorker(worker_id, port, proc)

    def relaunch(self, index: int) -> LocalWorker:
        """Start worker ``index`` again on its old port (stopping what is left of it).

        Returns at once; the new process keeps the old registry record (same URL), so a
        master sees the worker come back. Call :meth:`mark_active` once it answers.
        """
        old = self.workers[index]
        old.stop()
        worker = self._spawn(index, old.port)
        worker.node = old.node
        self.workers[index] = worker
        return worker

    def mark_active(self, index: int) -> None:
        """Record in the registry that worker ``index`` serves again."""
        worker = self.workers[index]
        if worker.node is None:
            return
        try:
            worker.node = self.store.set_worker_status(worker.node.id, WorkerStatus.ACTIVE)
        except StoreError:
            logger.warning("could not mark worker %s active again", worker.worker_id)

    def respawn(self, index: int, timeout_s: float | None = None) -> LocalWorker:
        """:meth:`relaunch`, wait for ``/health``, :meth:`mark_active`; blocking.

        Raises :class:`GridError` if it does not answer in time (it is stopped then).
        """
        worker = self.relaunch(index)
        deadline = time.monotonic() + (timeout_s or self.startup_timeout_s)
        try:
            with httpx.Client(timeout=2.0) as http:
                self._wait_healthy(http, worker, deadline)
        except BaseException:
            worker.stop()
            raise
        self.mark_active(index)
        return worker

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
            if probe_sync(http, worker.url, timeout_s=5.0).ok:
                return
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


def claim_throwaway(folder: Path, prefix: str) -> None:
    """Mark ``folder`` (a throwaway registry's) as ours and remove those of dead runs.

    A run killed with SIGKILL cannot delete its ``TemporaryDirectory``: its registry, with
    an unfinished task no other registry knows, stays in the temp folder. Its workers are
    gone with it (:func:`die_with_parent`), so nothing can resume that task; each such
    folder is logged (naming its unfinished tasks) and removed.
    """
    (folder / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "boot": _boot_id()}))
    sweep_throwaways(prefix, keep=folder)


def sweep_throwaways(prefix: str, *, keep: Path | None = None,
                     root: Path | None = None) -> list[Path]:
    """Remove throwaway registries named ``prefix*`` whose owner process is gone."""
    removed = []
    for folder in sorted((root or Path(tempfile.gettempdir())).glob(prefix + "*")):
        if not folder.is_dir() or (keep is not None and folder == keep):
            continue
        if _owner_alive(folder / OWNER_FILE):
            continue
        unfinished = _unfinished_tasks(folder / "registry.db")
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
        logger.warning("removed %s, the registry of a killed local run%s", folder,
                       f" (its unfinished task(s) {', '.join(unfinished)} cannot be resumed: "
                       "their workers died with it)" if unfinished else "")
    return removed


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _owner_alive(owner: Path) -> bool:
    """True while the process named in ``owner`` runs (or the file is being written)."""
    try:
        info = json.loads(owner.read_text())
        pid, boot = int(info["pid"]), str(info.get("boot", ""))
    except FileNotFoundError:
        # No owner file: an older run's folder, or one being created this very moment.
        try:
            return time.time() - owner.parent.stat().st_mtime < 60
        except OSError:
            return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if boot and boot != _boot_id():
        return False  # written before the machine rebooted
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unfinished_tasks(db: Path) -> list[str]:
    if not db.is_file():
        return []
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT id FROM tasks WHERE status NOT IN "
                                "('completed', 'failed', 'cancelled')").fetchall()
    except sqlite3.Error:
        return []
    return [str(r[0]) for r in rows]
