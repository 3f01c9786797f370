"""What watching a run costs: one task run from the master's page twice, once with the
page open until the run ends and once with the page left right after Run (the run goes on
in the master's process; nobody watches it).

Both runs are timed by the registry (the task's ``started_at`` to ``finished_at``), so the
page's own load time is not in the figure; the runs alternate, and the figure compares
their medians. Starts a grid as ``make up`` does (2 workers, the Streamlit master, a UI
password) and drives Debian's headless ``chromium`` (``make browser``); without Chromium
the row says it was skipped. The browser test ``tests/ui/test_browser_run.py`` runs
:func:`measure` on its own grid.

``python -m scripts.bench_watching`` prints the rows on their own.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from database.models import TaskStatus
from database.store import Store

logger = logging.getLogger(__name__)

#: The issue's measure: 400 subtasks of 50 ms each, long enough for a page to poll often.
COMMAND = "noop 400 sleep 50"
REPEATS = 2
#: Seconds one run may take before the measure gives up.
RUN_TIMEOUT_S = 180.0

Row = tuple[str, str, str]


@dataclass(frozen=True)
class WatchingFigures:
    """Seconds each run took, by the registry's clock."""

    headless_s: list[float]
    watched_s: list[float]

    @property
    def slowdown(self) -> float:
        """Median watched run over median unwatched run (1.0: watching is free)."""
        return statistics.median(self.watched_s) / statistics.median(self.headless_s)

    @property
    def cost_pct(self) -> float:
        """Throughput lost to watching, in percent (negative: noise in its favour)."""
        return (1 - 1 / self.slowdown) * 100


def _wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def _open_run_page(page: Any, url: str, password: str | None) -> None:
    page.goto(url)
    box = page.get_by_label("What should the grid do?", exact=True)
    if password is not None:
        field = page.get_by_label("Password", exact=True)
        field.or_(box).first.wait_for()
        if field.is_visible():
            field.fill(password)
            page.get_by_role("button", name="Sign in", exact=True).click()
    box.wait_for()


def start_run(page: Any, url: str, password: str | None, store: Store,
              command: str = COMMAND) -> str:
    """Open the Run page, plan ``command``, click Run; returns the new task's id."""
    _open_run_page(page, url, password)
    before = {t.id for t in store.list_tasks(limit=20)}
    page.get_by_label("What should the grid do?", exact=True).fill(command)
    page.get_by_role("button", name="Plan", exact=True).click()
    run = page.get_by_role("button", name="Run", exact=True)
    _wait(run.is_enabled, 60, "the Run button")
    run.click()
    new: str = _wait(lambda: next((t.id for t in store.list_tasks(limit=20)
                                   if t.id not in before), None), 60, "the task to be created")
    page.get_by_text(re.compile(r"subtasks done")).first.wait_for(timeout=60_000)
    return new


def run_seconds(store: Store, task_id: str, timeout: float = RUN_TIMEOUT_S) -> float:
    """Wait for ``task_id`` to finish; its run time by the registry's clock."""
    done = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)
    task = _wait(lambda: (t if (t := store.get_task_record(task_id)).status in done else None),
                 timeout, f"task {task_id} to end")
    if task.status is not TaskStatus.COMPLETED:
        raise RuntimeError(f"task {task_id} ended {task.status.value}, not completed")
    if task.started_at is None or task.finished_at is None:
        raise RuntimeError(f"task {task_id} has no start or end time")
    return float((task.finished_at - task.started_at).total_seconds())


def measure(page: Any, url: str, store: Store, password: str | None = None,
            command: str = COMMAND, repeats: int = REPEATS) -> WatchingFigures:
    """Run ``command`` ``repeats`` times unwatched and as often watched, alternating."""
    headless: list[float] = []
    watched: list[float] = []
    for _ in range(repeats):
        task_id = start_run(page, url, password, store, command)
        page.goto("about:blank")  # nobody watches: the session ends, the run goes on
        headless.append(run_seconds(store, task_id))

        task_id = start_run(page, url, password, store, command)
        watched.append(run_seconds(store, task_id))  # the page polls all along
        page.get_by_text(re.compile(r"Results \(")).first.wait_for(timeout=60_000)
    logger.info("watching: unwatched %s s, watched %s s", headless, watched)
    return WatchingFigures(headless, watched)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def benchmarks() -> list[Row]:
    """Rows ``(benchmark, figure, unit)`` for ``python -m scripts.bench``."""
    from scripts.screenshots import chromium

    exe = chromium()
    if exe is None:
        return [("watching a run in the browser", "skipped",
                 "no chromium (make browser installs it)")]
    password = secrets.token_urlsafe(18)
    saved = os.environ.get("NADG_UI_PASSWORD")
    os.environ["NADG_UI_PASSWORD"] = password  # the grid's master inherits it
    try:
        figures = _measure_on_a_grid(exe, password)
    finally:
        if saved is None:
            os.environ.pop("NADG_UI_PASSWORD", None)
        else:
            os.environ["NADG_UI_PASSWORD"] = saved
    return [
        (f"`{COMMAND}` unwatched (page left after Run), median of {REPEATS}",
         f"{statistics.median(figures.headless_s):.2f}", "s"),
        (f"`{COMMAND}` watched (page open until the end), median of {REPEATS}",
         f"{statistics.median(figures.watched_s):.2f}", "s"),
        ("watching cost (throughput lost while a page watches)", f"{figures.cost_pct:.1f}",
         "%"),
    ]


def _measure_on_a_grid(exe: str, password: str) -> WatchingFigures:
    from playwright.sync_api import sync_playwright

    from database.backends.sqlite import SqliteStore
    from scripts.grid import running_grid
    from scripts.screenshots import CHROMIUM_ARGS

    with tempfile.TemporaryDirectory(prefix="nadg-watch-") as tmp:
        registry = Path(tmp) / "registry.db"
        with running_grid(2, registry=registry, ui=True, ui_port=_free_port(),
                          watchdog=False) as grid, sync_playwright() as pw:
            if grid.ui_url is None:
                raise RuntimeError("the grid started without its master UI")
            store = SqliteStore(registry)
            browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS,
                                         headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1600})
                page.set_default_timeout(120_000)
                figures = measure(page, grid.ui_url, store, password)
            finally:
                browser.close()
                store.close()
    return figures


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    from scripts.bench import main

    raise SystemExit(main(["--only", "scripts.bench_watching"]))
