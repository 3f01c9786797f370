"""`make up` for the real-browser tests: the grid with its UI on a free port, as a person
starts it (``scripts.grid --workers 2 --ui``), stopped with Ctrl-C as a person stops it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from database.config import StoreSettings, open_store
from database.store import Store
from tests.support.servers import REPO_ROOT, free_port
from tests.support.waiting import wait_until

ARTIFACTS = REPO_ROOT / "test-artifacts"
#: Settings of the machine that must not leak into the grid under test.
_DROPPED = ("NADG_AUTH_TOKEN", "GEMINI_API_KEY", "GOOGLE_API_KEY", "DATABASE_URL",
            "SUPABASE_URL", "SUPABASE_SERVICE_KEY")


def _ui_up(url: str) -> bool:
    try:
        return httpx.get(url + "/_stcore/health", timeout=1.0).text.strip() == "ok"
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def grid_with_ui(tmp: Path, password: str | None = None,
                 keep_log_as: str | None = None) -> Iterator[tuple[str, Store]]:
    """Start the grid and its UI in ``tmp``; yield the UI's URL and a handle on its
    registry (to change it behind the page's back). ``password``: the operator login;
    ``keep_log_as``: copy the grid's log to ``test-artifacts/`` under that name."""
    registry = tmp / "registry.db"
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in _DROPPED and not k.startswith("NADG_UI_")}
    env.update(NADG_REGISTRY=str(registry), PYTHONUNBUFFERED="1")
    if password is not None:
        env["NADG_UI_PASSWORD"] = password
    log_path = tmp / "grid.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.grid", "--workers", "2", "--ui", "--ui-port", str(port)],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    store: Store | None = None
    try:
        wait_until(lambda: proc.poll() is not None or _ui_up(url), timeout=120,
                   what="the grid's Streamlit UI")
        if proc.poll() is not None:
            raise AssertionError(f"scripts.grid exited with {proc.returncode}:\n"
                                 + log_path.read_text(errors="replace")[-3000:])
        store = open_store(StoreSettings(NADG_REGISTRY=registry))
        opened = store
        wait_until(lambda: len(opened.list_workers()) == 2, timeout=60,
                   what="2 workers registered")
        yield url, store
    finally:
        if store is not None:
            store.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a person stops `make up`
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
        if keep_log_as is not None:
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(log_path, ARTIFACTS / keep_log_as)  # what the grid said
