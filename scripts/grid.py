"""A local grid on one machine: ``python -m scripts.grid --workers 2 --ui`` (``make up``).

Starts N real workers on loopback (as the container starts them), an SQLite registry
(``.nadg/registry.db`` unless ``NADG_REGISTRY`` or ``--registry`` says otherwise), a random
shared token (unless ``NADG_AUTH_TOKEN`` is set), and with ``--ui`` the Streamlit master
(``streamlit run master_app/app.py``) when it exists. Prints the URLs, then runs until
Ctrl-C or SIGTERM and stops everything cleanly.

A watchdog (:mod:`master_app.worker_watchdog`) restarts a worker that dies, at once, backing off
when it crash-loops (``--no-watchdog`` turns it off). ``--metrics-port P`` (or
``NADG_METRICS_PORT``) serves the master's Prometheus metrics (:mod:`master_app.metrics`)
read from the grid's registry. Exit codes: :class:`nexus_common.cli.ExitCode`.

For tests: :func:`running_grid` is the same as a context manager.
"""

from __future__ import annotations

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
from typing import Annotated

import httpx
import typer

from database.backends.sqlite import SqliteStore
from database.config import DEFAULT_REGISTRY
from database.models import WorkerStatus
from database.store import StoreError
from master_app.local_grid import GridCancelled, LocalGrid
from master_app.metrics import (
    MetricsError,
    MetricsServer,
    metrics_port_from_env,
    start_metrics_server,
)
from master_app.service import live_workers
from master_app.settings import MasterSettings
from master_app.ui.auth_config import (
    AuthConfigError,
    authlib_installed,
    read_oidc_section,
    resolve_auth,
)
from master_app.worker_watchdog import Watchdog
from nexus_common.cli import CliError, ExitCode, new_app, run_app

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
    metrics_url: str | None = None
    grid: LocalGrid | None = None
    watchdog: Watchdog | None = None


def _forget_stale_local_workers(store: SqliteStore) -> None:
    """Workers of an earlier local grid (loopback URLs) are gone: mark them offline."""
    for worker in live_workers(store):
        if worker.vm_url.startswith(("http://127.0.0.1:", "http://localhost:")):
            store.set_worker_status(worker.id, WorkerStatus.OFFLINE)


def check_ui_login(address: str) -> None:
    """Refuse, as the app itself would, a master bound to ``address`` without a usable login
    (raises :class:`~master_app.ui.auth_config.AuthConfigError` saying what to set)."""
    resolve_auth(MasterSettings(), server_address=address,
                 oidc_section=read_oidc_section(REPO_ROOT), authlib_installed=authlib_installed())


def _start_ui(port: int, env: dict[str, str], address: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.port", str(port), "--server.address", address,
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
                 ui_port: int = 8501, ui_address: str = "127.0.0.1", token: str | None = None,
                 capacity: int = 2,
                 cancel: threading.Event | None = None, watchdog: bool = True,
                 metrics_port: int | None = None) -> Iterator[GridHandle]:
    """Start the grid, yield a :class:`GridHandle`, stop everything on exit.

    With ``watchdog`` a dead worker is restarted; with ``metrics_port`` (0: any free port)
    the master's metrics are served from the grid's registry.

    Setting ``cancel`` while it starts stops what was started and raises
    :class:`~master_app.local_grid.GridCancelled`.
    """
    cancel = cancel or threading.Event()
    if ui:
        check_ui_login(ui_address)  # before anything starts
    path = Path(registry or os.environ.get("NADG_REGISTRY") or REPO_ROOT / DEFAULT_REGISTRY)
    token = token or os.environ.get("NADG_AUTH_TOKEN") or secrets.token_urlsafe(24)
    store = SqliteStore(path)
    ui_proc: subprocess.Popen[bytes] | None = None
    metrics: MetricsServer | None = None
    try:
        _forget_stale_local_workers(store)
        with contextlib.ExitStack() as stack:
            grid = stack.enter_context(LocalGrid(workers, store, token, capacity=capacity,
                                                 quiet=False, cancel=cancel))
            handle = GridHandle(registry=path, token=token,
                                worker_urls=[w.url for w in grid.workers], grid=grid)
            if watchdog:  # exits before the grid does, so it restarts nothing being stopped
                handle.watchdog = stack.enter_context(Watchdog(grid))
            if metrics_port is not None:
                metrics = start_metrics_server(metrics_port, store)
                handle.metrics_url = metrics.url
            if ui:
                if APP.is_file():
                    env = {**os.environ, "NADG_AUTH_TOKEN": token, "NADG_REGISTRY": str(path),
                           "PYTHONPATH": str(REPO_ROOT), "NADG_UI_ADDRESS": ui_address}
                    for name in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_KEY",
                                 "SUPABASE_KEY", "SUPABASE_ANON_KEY"):
                        env.pop(name, None)
                    ui_proc = _start_ui(ui_port, env, ui_address)
                    host = "127.0.0.1" if ui_address in ("0.0.0.0", "::") else ui_address
                    host = f"[{host}]" if ":" in host else host  # an IPv6 address
                    handle.ui_url = f"http://{host}:{ui_port}"
                    _wait_ui(ui_proc, handle.ui_url, cancel)
                else:
                    logger.warning("no %s yet: starting without the UI", APP)
            yield handle
    finally:
        if ui_proc is not None:
            _stop(ui_proc)
        if metrics is not None:
            metrics.close()
        store.close()


app = new_app("Start a local grid: N workers, an SQLite registry, optionally the master UI.")
app.info.no_args_is_help = False  # no arguments: 2 workers, as `make up` without --ui


@app.command()
def grid(
    workers: Annotated[int, typer.Option(min=1, help="how many workers")] = 2,
    capacity: Annotated[int, typer.Option(min=1, help="subtasks at once per worker")] = 2,
    ui: Annotated[bool, typer.Option("--ui", help="start the Streamlit master too")] = False,
    ui_port: Annotated[int, typer.Option("--ui-port", "--port",
                                         help="the master's port")] = 8501,
    ui_address: Annotated[str, typer.Option(
        help="the master's bind address; off loopback it needs a login")] = "127.0.0.1",
    registry: Annotated[Path | None, typer.Option(help="SQLite registry file")] = None,
    watchdog: Annotated[bool, typer.Option(
        "--watchdog/--no-watchdog", help="restart workers that die")] = True,
    metrics_port: Annotated[int | None, typer.Option(
        min=0, max=65535,
        help="serve the master's Prometheus metrics here (or NADG_METRICS_PORT)")] = None,
) -> int:
    """Start the grid, print its URLs, run until Ctrl-C / SIGTERM, stop everything."""
    if metrics_port is None:
        try:
            metrics_port = metrics_port_from_env()
        except MetricsError as exc:
            raise CliError(str(exc), ExitCode.USAGE) from None
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        # Only an event: while starting, the grid checks it between steps and unwinds
        # (an exception raised here could land inside Popen and orphan a worker); once
        # up, the main thread sees it within 0.2 s.
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        with running_grid(workers, registry=registry, ui=ui, ui_port=ui_port,
                          ui_address=ui_address,
                          capacity=capacity, cancel=stop, watchdog=watchdog,
                          metrics_port=metrics_port) as handle:
            typer.echo(f"NEXUS Grid is up: {len(handle.worker_urls)} worker(s), registry "
                       f"{handle.registry}")
            for url in handle.worker_urls:
                typer.echo(f"  worker  {url}")
            if handle.ui_url:
                typer.echo(f"  master  {handle.ui_url}")
            if handle.metrics_url:
                typer.echo(f"  metrics {handle.metrics_url}")
            if handle.watchdog is not None:
                typer.echo("  watchdog restarts workers that die")
            typer.echo(f"  token   NADG_AUTH_TOKEN={handle.token}")
            typer.echo("Ctrl-C stops everything.")
            while not stop.is_set():  # not stop.wait(): the handler's set() would deadlock
                time.sleep(0.2)       # if it interrupted wait() holding the event's lock
            typer.echo("stopping...")
    except GridCancelled:
        typer.echo("stopped before the grid was up")
        return ExitCode.OK
    except (AuthConfigError, MetricsError) as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None
    except (RuntimeError, OSError, StoreError) as exc:
        raise CliError(str(exc)) from None
    typer.echo("stopped")
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the grid, wait for Ctrl-C / SIGTERM; returns the exit code."""
    logging.basicConfig(level=os.environ.get("NADG_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_app(app, argv, prog_name="python -m scripts.grid")


if __name__ == "__main__":
    raise SystemExit(main())
