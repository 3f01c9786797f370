"""Issue 15, Workers and Training side, in headless Chromium against ``make up``'s grid.

One grid for the module (``python -m scripts.grid --workers 2 --ui``: two real workers, an
SQLite registry of its own, Streamlit on a free port, no login on loopback); one browser
session walks the items in order:

- 12: no Streamlit "Deploy" in the header; the tab icon is served by the master itself.
- 4: a URL that does not answer is added *offline* with a warning; the form empties.
- 5: Ping all with a worker that never answers: the status shows at once and the page
  answers clicks while the pings wait out their 3 s timeout.
- 10: no "None" in empty cells; URLs whole; the latency chart is drawn.
- 15: a worker registered behind the page's back appears without a click (auto-refresh).
- 6: the Run page's per-worker table shows counts, never comma lists of shard numbers.
- 9 and 14 (Training part): the first visit shows the page and a spinner, not a grey
  screen; loss and accuracy are two charts; bytes read "50.9 KiB"; after Deploy, "Use this
  model" fills the Run page with a plan that names the trained head and is not zero-shot.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from database.models import WorkerStatus
from database.store import Store
from tests.support.browser_grid import grid_with_ui
from tests.support.servers import free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:
    """``make up`` on a free port with a registry of its own; yields the UI's URL and a
    handle on that registry (to change it behind the page's back)."""
    with grid_with_ui(tmp_path_factory.mktemp("grid-pages"),
                      keep_log_as="grid-pages.log") as grid:
        yield grid


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung worker)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def page(grid: tuple[str, Store], browser: Any) -> Iterator[Any]:
    """One browser session for the whole walk (state carries from page to page)."""
    url, _ = grid
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(url + "/workers")
    pg.get_by_role("heading", name="Workers").first.wait_for()
    try:
        yield pg
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "ui-pages-last.png"), full_page=True)
        context.close()


def _go(page: Any, title: str) -> None:
    page.get_by_role("link", name=title).first.click()
    page.get_by_role("heading", name=title).first.wait_for()


def _cells(frame: Any) -> list[list[str]]:
    """The rows a Streamlit dataframe shows (its grid's accessible cells)."""
    rows = []
    for row in frame.locator("[role=row]").all():
        cells = [c.inner_text() for c in row.locator("[role=gridcell]").all()]
        if cells:
            rows.append(cells)
    return rows


def _workers_table(page: Any) -> Any:
    return page.locator("[data-testid=stDataFrame]").first


def _row_of(page: Any, name: str) -> list[str]:
    """The row of worker ``name`` (empty while the table does not show it)."""
    return next((r for r in _cells(_workers_table(page)) if name in r), [])


def test_item_12_no_streamlit_deploy_and_a_local_tab_icon(page: Any, grid: tuple[str, Store]
                                                          ) -> None:
    url, _ = grid
    assert page.locator("[data-testid=stAppDeployButton]").count() == 0
    assert page.get_by_role("button", name="Deploy", exact=True).count() == 0
    icon = wait_until(lambda: page.locator("link[rel*=icon]").first.get_attribute("href"),
                      timeout=30, what="the tab icon")
    full = httpx.URL(url + "/").join(icon)
    assert full.host == "127.0.0.1" and "gstatic" not in icon, icon  # served by the master
    response = httpx.get(full, timeout=10)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert page.locator("[data-testid=stSidebarHeader] img, [data-testid=stHeaderLogo], "
                        "[data-testid=stLogo]").count() >= 1, "the logo is shown"


def test_item_4_an_unreachable_url_is_added_offline_and_the_form_empties(page: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    page.get_by_label("Worker URL", exact=True).fill(dead)
    page.get_by_label("Name (optional)", exact=True).fill("ghost")
    page.get_by_role("button", name="Add worker").click()
    page.get_by_text("as offline: it did not answer GET /health").wait_for()
    assert page.get_by_label("Worker URL", exact=True).input_value() == ""
    assert page.get_by_label("Name (optional)", exact=True).input_value() == ""
    row = wait_until(lambda: _row_of(page, "ghost"), timeout=30, what="the ghost row")
    assert "offline" in row and "active" not in row, row


def test_item_5_ping_all_does_not_freeze_the_page(page: Any, grid: tuple[str, Store],
                                                  silent_port: int) -> None:
    _, store = grid
    store.add_worker(f"http://127.0.0.1:{silent_port}", name="silent")
    wait_until(lambda: _row_of(page, "silent"), timeout=30, what="the silent worker's row")
    started = time.monotonic()
    page.get_by_role("button", name="Ping all").click()
    page.get_by_text(re.compile(r"Ping all: waiting on 4 worker")).wait_for(timeout=10_000)
    shown = time.monotonic() - started
    # the page answers while the silent worker's ping waits out its timeout
    toggle = page.get_by_label("Auto-refresh", exact=True)
    page.get_by_text("Auto-refresh", exact=True).click()
    wait_until(lambda: not toggle.is_checked(), timeout=5, what="the toggle to answer")
    answered = time.monotonic() - started
    assert shown < 2.5 and answered < 2.9, (shown, answered)
    page.get_by_text("Auto-refresh", exact=True).click()
    wait_until(toggle.is_checked, timeout=5, what="auto-refresh back on")
    page.get_by_text(re.compile(r"Pinged 4 workers in [\d.]+s: 2 answered; no answer from"))\
        .wait_for(timeout=20_000)


def test_item_10_no_none_cells_whole_urls_and_the_latency_chart(page: Any,
                                                                silent_port: int) -> None:
    rows = _cells(_workers_table(page))
    assert rows and all("None" not in cell for row in rows for cell in row), rows
    silent = next(r for r in rows if "silent" in r)
    assert f"http://127.0.0.1:{silent_port}" in silent  # the whole URL, not cut
    # the grid's accessible cells carry the values (the dash placeholder and the "ms" /
    # 24-hour formats are drawn on its canvas: AppTest checks the column configs)
    local = [r for r in rows if r[1].startswith("local-")]
    # columns: status, name, url, last ping, ago, latency, ...
    assert len(local) == 2 and all(re.fullmatch(r"\d+s ago", r[4]) for r in local), local
    assert silent[3] == "" and silent[4] == "never" and silent[5] == "", silent
    page.get_by_role("heading", name="Latency").wait_for()
    chart = page.locator("[data-testid=stVegaLiteChart]").first
    chart.wait_for()
    assert chart.locator("canvas, svg").count() >= 1


def test_item_15_the_workers_page_refreshes_itself(page: Any, grid: tuple[str, Store]) -> None:
    _, store = grid
    assert page.get_by_label("Auto-refresh", exact=True).is_checked()
    worker = store.add_worker(f"http://127.0.0.1:{free_port()}", name="late-arrival",
                              status=WorkerStatus.DRAINING)
    # no click: the live section re-reads the registry every few seconds
    row = wait_until(lambda: _row_of(page, "late-arrival"), timeout=20,
                     what="the new worker to appear by itself")
    assert "draining" in row
    store.remove_worker(worker.id)


def test_item_6_the_per_worker_table_counts_instead_of_listing(
        page: Any, grid: tuple[str, Store]) -> None:
    _, store = grid
    for worker in store.list_workers():  # only the grid's own two workers take this run
        if not (worker.name or "").startswith("local-"):
            store.remove_worker(worker.id)
    _go(page, "Run a task")
    page.get_by_label("What should the grid do?", exact=True).fill("noop 60")
    page.get_by_role("button", name="Plan", exact=True).click()
    run = page.get_by_role("button", name="Run", exact=True)
    wait_until(run.is_enabled, timeout=60, what="Run to be enabled")
    run.click()
    page.get_by_text(re.compile(r"60 of 60 subtasks done")).first.wait_for(timeout=120_000)
    workers = page.get_by_text("Workers", exact=True).locator(
        "xpath=following::*[@data-testid='stDataFrame'][1]")

    def settled() -> list[list[str]]:  # the grid's cells are redrawn after the text
        rows = _cells(workers)
        return rows if rows and sum(int(r[2]) for r in rows) >= 60 else []

    rows = wait_until(settled, timeout=30, what="the per-worker table to count 60 done")
    assert len(rows) == 2, rows
    for row in rows:
        assert all("," not in cell for cell in row[1:]), row  # counts, not lists


def test_items_9_and_14_training_charts_bytes_and_use_this_model(page: Any) -> None:
    # the rows to label are on the Run page already: the model's plan runs at once
    page.locator("input[type=file]").first.set_input_files(
        str(REPO / "examples" / "tickets.csv"))
    page.get_by_text("tickets.csv: 40 rows").first.wait_for()

    page.get_by_role("link", name="Training").first.click()
    # item 14: the page shows itself at once, with a spinner while torch loads
    page.get_by_role("heading", name="Training").first.wait_for(timeout=3_000)
    page.get_by_text("tickets_labelled.csv").first.click()
    rounds = page.get_by_label("Rounds", exact=True)
    rounds.fill("2")
    rounds.press("Enter")
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Last training run").wait_for(timeout=360_000)  # a loaded CI box

    charts = page.locator("[data-testid=stVegaLiteChart]")
    charts.nth(2).wait_for(timeout=30_000)  # the page renders its charts in turn
    assert charts.count() >= 3, "loss, accuracy and bytes: one chart each"
    table = page.locator("[data-testid=stDataFrame]").last
    rows: list[list[str]] = wait_until(lambda: [r for r in _cells(table) if len(r) > 1][:2]
                                       if len(_cells(table)) == 2 else [],
                                       timeout=60, what="the per-round table")
    cells = [c for row in rows for c in row]
    sizes = [c for c in cells if c.endswith("iB") or c.endswith(" B")]
    assert sizes and all(re.fullmatch(r"\d+(\.\d{1,2})? (B|KiB|MiB)", s) for s in sizes), sizes
    assert "None" not in cells
    wire = page.locator("[data-testid=stMetric]").filter(has_text="On the wire")
    assert re.search(r"\d+(\.\d{1,2})? (KiB|MiB)", wire.inner_text())

    page.get_by_role("button", name="Deploy to workers").click()
    page.get_by_text(re.compile(r"Model head-[0-9a-f]+ is on workers")).wait_for(
        timeout=120_000)
    model = re.search(r"head-[0-9a-f]+", page.get_by_text(
        re.compile(r"Model head-[0-9a-f]+ is on workers")).inner_text())
    assert model is not None
    page.get_by_role("button", name="Use this model on the Run page").click()

    page.get_by_role("heading", name="Run a task").first.wait_for()
    command = page.get_by_label("What should the grid do?", exact=True)
    wait_until(lambda: command.input_value().startswith("classify as "), timeout=30,
               what="the command to be filled in")
    page.get_by_text(f"classify each row with the trained model {model.group(0)}") \
        .first.wait_for()
    assert page.get_by_text("zero-shot").count() == 0
    run = page.get_by_role("button", name="Run", exact=True)
    wait_until(run.is_enabled, timeout=30, what="Run to be enabled with the model's plan")
    run.click()
    page.get_by_text(re.compile(r"Results \(40 rows\)")).first.wait_for(timeout=120_000)
