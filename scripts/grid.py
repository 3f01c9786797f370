"""A local grid on one machine: ``python -m scripts.grid --workers 2 --ui`` (``make up``).

Starts N real workers on loopback (as the container starts them), an SQLite registry
(``.nadg/registry.db`` unless ``NADG_REGISTRY`` or ``--registry`` says otherwise), a random
shared token (unless ``NADG_AUTH_TOKEN`` is set), and with ``--ui`` the Streamlit master
(``streamlit run master_app/app.py``) when it exists. Prints the URLs, then runs until
Ctrl-C or SIGTERM and stops everything cleanly.

For tests: :func:`running_grid` is the same as a context manager.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from database.backends.sqlite import SqliteStore
from database.config import DEFAULT_REGISTRY
from database.models import WorkerStatus
from database.store import StoreError
from master_app.local_grid import GridCancelled, LocalGrid

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
APP = REPO_ROOT / "master_app" / "app.py"


@dataclass
class GridHandle:
    """What a running grid offers: its registry, token, worker URLs and UI URL."""

    registry: Path
    token: str
    worker_urls: list[str] = field(default_factory=list)
    ui_url: str | None = None


def _forget_stale_local_workers(store: SqliteStore) -> None:
    """Workers of an earlier local grid (loopback URLs) are gone: mark them offline."""
    for worker in store.list_workers([WorkerStatus.ACTIVE, WorkerStatus.BUSY]):
        if worker.vm_url.startswith(("http://127.0.0.1:", "http://localhost:")):
            store.set_worker_status(worker.id, WorkerStatus.OFFLINE)


def _start_ui(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=REPO_ROOT, env=env, start_new_session=True)


def _wait_ui(proc: subprocess.Popen[bytes], url: str, cancel: threading.Event,
             timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cancel.is_set():
            raise GridCancelled("told to stop while the master was starting")
        if proc.poll() is not None:
            raise RuntimeError(f"the Streamlit master exited with {proc.returncode}")
        try:
            if httpx.get(url + "/_stcore/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the Streamlit master did not come up on {url}")


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def running_grid(workers: int = 2, *, registry: Path | None = None, ui: bool = False,
                 ui_port: int = 8501, token: str | None = None,
                 capacity: int = 2,
                 cancel: threading.Event | None = None) -> Iterator[GridHandle]:
    """Start the grid, yield a :class:`GridHandle`, stop everything on exit.

    Setting ``cancel`` while it starts stops what was started and raises
    :class:`~master_app.local_grid.GridCancelled`.
    """
    cancel = cancel or threading.Event()
    path = Path(registry or os.environ.get("NADG_REGISTRY") or REPO_ROOT / DEFAULT_REGISTRY)
    token = token or os.environ.get("NADG_AUTH_TOKEN") or secrets.token_urlsafe(24)
    store = SqliteStore(path)
    ui_proc: subprocess.Popen[bytes] | None = None
    try:
        _forget_stale_local_workers(store)
        with LocalGrid(workers, store, token, capacity=capacity, quiet=False,
                       cancel=cancel) as grid:
            handle = GridHandle(registry=path, token=token,
                                worker_urls=[w.url for w in grid.workers])
            if ui:
                if APP.is_file():
                    env = {**os.environ, "NADG_AUTH_TOKEN": token, "NADG_REGISTRY": str(path),
                           "PYTHONPATH": str(REPO_ROOT)}
                    env.pop("DATABASE_URL", None)
                    env.pop("SUPABASE_URL", None)
                    ui_proc = _start_ui(ui_port, env)
                    handle.ui_url = f"http://127.0.0.1:{ui_port}"
                    _wait_ui(ui_proc, handle.ui_url, cancel)
                else:
                    logger.warning("no %s yet: starting without the UI", APP)
            yield handle
    finally:
        if ui_proc is not None:
            _stop(ui_proc)
        store.close()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the grid, wait for Ctrl-C / SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m scripts.grid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="how many workers (2)")
    parser.add_argument("--capacity", type=int, default=2, help="subtasks at once per worker")
    parser.add_argument("--ui", action="store_true", help="start the Streamlit master too")
    parser.add_argument("--ui-port", "--port", dest="ui_port", type=int, default=8501)
    parser.add_argument("--registry", type=Path, help="SQLite registry file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("NADG_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        # Only an event: while starting, the grid checks it between steps and unwinds
        # (an exception raised here could land inside Popen and orphan a worker); once
        # up, the main thread sees it within 0.2 s.
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        with running_grid(args.workers, registry=args.registry, ui=args.ui,
                          ui_port=args.ui_port, capacity=args.capacity,
                          cancel=stop) as grid:
            print(f"NEXUS Grid is up: {len(grid.worker_urls)} worker(s), registry "
                  f"{grid.registry}", flush=True)
            for url in grid.worker_urls:
                print(f"  worker  {url}", flush=True)
            if grid.ui_url:
                print(f"  master  {grid.ui_url}", flush=True)
            print(f"  token   NADG_AUTH_TOKEN={grid.token}", flush=True)
            print("Ctrl-C stops everything.", flush=True)
            while not stop.is_set():  # not stop.wait(): the handler's set() would deadlock
                time.sleep(0.2)       # if it interrupted wait() holding the event's lock
            print("stopping...", flush=True)
    except GridCancelled:
        print("stopped before the grid was up", flush=True)
        return 0
    except (RuntimeError, OSError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
