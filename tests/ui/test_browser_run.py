"""Issue 15's Run and History items, walked in headless Chromium against a real grid.

``python -m scripts.grid --workers 2 --ui`` runs as ``make up`` runs it (2 real workers, an
SQLite registry in tmp, Streamlit on a free port); one grid for the module. Each test is
one numbered item of the issue and asserts the fixed behaviour as a person sees it:

1. a plan made for one command is not run under another (Run disabled until re-planned);
2. the command, the data and the plan outlive a visit to another page;
3. the sidebar's live-worker count follows a Drain at once;
7. results keep the input's columns and ids;
8. Cancel is fast, says "Cancelled", ends the lanes, and the task resumes;
11. errors in plain words, the help with its line breaks;
13. History: a re-run listed at once, short ids, a row click opens a task, plan cards;
14. with an 86k-row file loaded, a click on the Run page answers in well under a second;

and issue 12's watching cost, last (it opens a tab of its own): the same task run from the
page once left right after Run and once watched to the end, each timed by the registry
(:mod:`scripts.bench_watching`); the figure goes to ``test-artifacts/watching.json`` and
the log, and the test fails when watching slows the run by half again or more (before the
snapshot and the bounded poll, it was 3.7x).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from database.models import TaskStatus
from database.store import Store
from scripts.bench_watching import measure
from tests.support.browser_grid import ARTIFACTS, grid_with_ui
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]
TICKETS = REPO / "examples" / "tickets.csv"
UI_PASSWORD = "browser-run-test-password"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def grid_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:
    """``make up`` on a free port with a registry of its own; yields the UI's URL and a
    handle on the registry."""
    with grid_with_ui(tmp_path_factory.mktemp("grid"), password=UI_PASSWORD) as grid:
        yield grid


@pytest.fixture(scope="module")
def page(grid_ui: tuple[str, Store], browser: Any) -> Iterator[Any]:
    """One signed-in browser tab for the module (the tests follow one person's session)."""
    url, _ = grid_ui
    tab = browser.new_page(viewport={"width": 1500, "height": 1800})
    tab.set_default_timeout(WAIT_MS)
    tab.goto(url)
    tab.get_by_label("Password", exact=True).fill(UI_PASSWORD)
    tab.get_by_role("button", name="Sign in", exact=True).click()
    tab.get_by_label("What should the grid do?", exact=True).wait_for()
    yield tab
    tab.close()


def _settle(page: Any) -> None:
    """Wait until Streamlit has finished the run a click started (no status spinner)."""
    page.wait_for_timeout(150)
    page.locator("[data-testid=stStatusWidget]").wait_for(state="hidden")


def _goto(page: Any, title: str) -> None:
    page.locator("[data-testid=stSidebarNav]").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).first.wait_for()
    _settle(page)


def _command(page: Any, text: str) -> None:
    box = page.get_by_label("What should the grid do?", exact=True)
    box.fill(text)
    box.press("Control+Enter")  # Streamlit takes a text area's value on Ctrl+Enter or blur
    _settle(page)


def _plan(page: Any) -> None:
    page.get_by_role("button", name="Plan", exact=True).click()
    _settle(page)


def _run_button(page: Any) -> Any:
    """The Run button of the latest run (a rerun keeps the old one, greyed, a moment)."""
    return page.locator("[data-testid=stElementContainer]:not([data-stale=true])").get_by_role(
        "button", name="Run", exact=True)


def _table_rows(frame: Any) -> list[list[str]]:
    """The rows a Streamlit dataframe shows (its grid's accessible cells), header excluded."""
    frame.locator("[role=gridcell]").first.wait_for(state="attached")
    rows = []
    for row in frame.locator("[role=row]").all():
        # a short timeout: the grid may re-render while it is read (the caller polls again)
        cells = [c.inner_text(timeout=1_000) for c in row.locator("[role=gridcell]").all()]
        if cells:
            rows.append(cells)
    return rows


def _headers(frame: Any) -> list[str]:
    frame.locator("[role=columnheader]").first.wait_for(state="attached")
    return [h.inner_text().strip() for h in frame.locator("[role=columnheader]").all()]


def test_item_3_the_sidebar_count_follows_a_drain_at_once(page: Any) -> None:
    side = page.locator("[data-testid=stSidebar]")
    side.get_by_text("2 live of 2").wait_for()
    _goto(page, "Workers")
    page.get_by_role("button", name="Drain", exact=True).click()
    side.get_by_text("1 live of 2").wait_for(timeout=3_000)  # this run, not the next one
    page.get_by_role("button", name="Activate", exact=True).click()
    side.get_by_text("2 live of 2").wait_for(timeout=3_000)


def test_item_11_errors_speak_plainly_and_the_help_keeps_its_lines(page: Any) -> None:
    _goto(page, "Run a task")
    _command(page, "classify as billing / bug")
    _plan(page)
    error = page.locator("[data-testid=stAlertContentError]").first
    error.wait_for()
    text = error.inner_text()
    assert "upload a data file" in text and "--data" not in text, text
    _command(page, "make me a sandwich")
    _plan(page)
    help_block = page.locator("[data-testid=stAlertContentError] code").first
    help_block.wait_for()
    lines = help_block.inner_text().splitlines()
    assert lines[0] == "I understand these commands:", lines
    assert any(line.startswith("  classify as A / B / C") for line in lines), lines


def test_item_1_a_plan_is_stale_after_an_edit_and_run_waits_for_a_new_one(
        page: Any, grid_ui: tuple[str, Store]) -> None:
    _, store = grid_ui
    before = {t.id for t in store.list_tasks(limit=500)}
    page.locator("[data-testid=stFileUploader] input[type=file]").first.set_input_files(
        str(TICKETS))
    page.get_by_text("tickets.csv: 40 rows").wait_for()
    _command(page, "classify as billing / bug / feature")
    _plan(page)
    page.get_by_text("classify 40 rows of column 'text'").wait_for()
    expect(_run_button(page)).to_be_enabled()
    _command(page, "embed")
    page.get_by_text("The plan is out of date: the command changed").wait_for()
    expect(_run_button(page)).to_be_disabled()
    assert {t.id for t in store.list_tasks(limit=500)} == before
    _command(page, "classify as billing / bug / feature")  # back to what was planned
    _plan(page)
    expect(_run_button(page)).to_be_enabled()


def test_item_2_command_data_and_plan_outlive_another_page(page: Any) -> None:
    _goto(page, "History")
    _goto(page, "Run a task")
    box = page.get_by_label("What should the grid do?", exact=True)
    assert box.input_value() == "classify as billing / bug / feature"
    page.get_by_text(re.compile(r"tickets\.csv: 40 rows.*loaded before")).wait_for()
    page.get_by_text("classify 40 rows of column 'text'").wait_for()
    assert page.get_by_text("The plan is out of date").count() == 0
    expect(_run_button(page)).to_be_enabled()


def test_item_7_results_keep_the_input_columns_and_ids(page: Any) -> None:
    _run_button(page).click()
    page.get_by_text("completed: 10 of 10 subtasks completed").wait_for(timeout=120_000)
    page.get_by_text("Results (40 rows)").wait_for()
    results = page.locator("[data-testid=stDataFrame]").filter(has_text="predicted label")
    results.wait_for()
    headers = _headers(results)
    assert headers[:4] == ["id", "text", "label", "predicted label"], headers
    rows = _table_rows(results)
    assert [r[0] for r in rows[:3]] == ["1", "2", "3"], rows[:3]  # the file's ids
    assert rows[0][1] == "I was charged twice for my subscription this month"
    assert rows[0][2] == "billing"  # the input's own label is kept
    assert rows[0][3] in {"billing", "bug", "feature"}


def test_item_8_cancel_is_fast_says_cancelled_and_the_task_resumes(
        page: Any, grid_ui: tuple[str, Store]) -> None:
    _, store = grid_ui
    _command(page, "noop 40 sleep 1000")
    _plan(page)
    _run_button(page).click()
    page.get_by_role("button", name="Cancel", exact=True).wait_for()
    [task] = store.list_tasks(limit=1)
    wait_until(lambda: store.get_task(task.id).task.status is TaskStatus.RUNNING, timeout=30,
               what="the task to run")
    clicked = time.monotonic()
    page.get_by_role("button", name="Cancel", exact=True).click()
    warning = page.get_by_text(re.compile(r"cancelled: \d+ of 40 subtasks completed, \d+ "
                                          r"cancelled"))
    warning.wait_for(timeout=10_000)
    shown_s = time.monotonic() - clicked
    assert shown_s < 3.0, f"the cancelled outcome took {shown_s:.1f}s to show"
    assert "failed" not in warning.inner_text()
    assert store.get_task(task.id).task.status is TaskStatus.CANCELLED
    cancelled = page.locator("[data-testid=stMetric]").filter(has_text="Cancelled").first
    assert int(cancelled.locator("[data-testid=stMetricValue]").inner_text()) > 0
    lanes = page.locator("[data-testid=stDataFrame]").filter(has_text="per second").first
    headers = _headers(lanes)
    assert "running" in headers, headers
    running = headers.index("running")
    assert all(r[running] == "0" for r in _table_rows(lanes))  # the lanes ended
    page.get_by_role("button", name="Resume", exact=True).click()
    page.get_by_text("completed: 40 of 40 subtasks completed").wait_for(timeout=90_000)
    assert store.get_task(task.id).task.status is TaskStatus.COMPLETED


def _click_row(page: Any, frame: Any, index: int) -> None:
    """Click the row marker of row ``index`` (0 = first data row) of a dataframe (its
    grid is a canvas: Streamlit draws the header and each row 35 px high)."""
    box = frame.bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + 35 * (index + 1) + 17)


def test_item_13_history_short_ids_row_click_rerun_listed_at_once(
        page: Any, grid_ui: tuple[str, Store]) -> None:
    _, store = grid_ui
    _goto(page, "History")
    table = page.locator("[data-testid=stDataFrame]").first
    rows = _table_rows(table)
    id_col = _headers(table).index("id")
    newest = store.list_tasks(limit=2)
    assert rows[0][id_col] == newest[0].id[:8]  # short ids: no horizontal scrolling
    assert all(len(r[id_col]) == 8 for r in rows)
    opened = page.locator("h3").filter(has_text=newest[1].id)  # the task of that row

    def click_opens() -> bool:
        _click_row(page, table, 1)  # the classify task (the canvas may still be drawing)
        try:
            opened.wait_for(timeout=5_000)
        except PlaywrightTimeout:
            return False
        return True

    wait_until(click_opens, timeout=30, what="a row click to open its task")
    page.get_by_text("Map: classify").wait_for()  # the plan as cards, not raw JSON
    page.get_by_role("button", name="Re-run", exact=True).click()
    page.get_by_text("Started task").wait_for()
    rerun = store.list_tasks(limit=1)[0]
    assert rerun.id != newest[0].id
    wait_until(lambda: _table_rows(page.locator("[data-testid=stDataFrame]").first)[0][id_col]
               == rerun.id[:8], timeout=10, what="the re-run listed, with no Refresh")
    page.locator("h3").filter(has_text=rerun.id).wait_for()  # and opened
    page.get_by_role("textbox", name="Search tasks", exact=True).fill("noop 40")
    page.get_by_role("textbox", name="Search tasks", exact=True).press("Enter")
    _settle(page)
    wait_until(lambda: [r[id_col] for r in _table_rows(
        page.locator("[data-testid=stDataFrame]").first)] == [newest[0].id[:8]], timeout=10,
        what="the search to narrow the list to the noop task")


def test_item_14_a_big_file_does_not_slow_every_click(page: Any, tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    rows = "\n".join(f"{i},ticket {i} about a bug in the app,bug" for i in range(1, 86_001))
    big.write_text("id,text,label\n" + rows + "\n")
    _goto(page, "Run a task")
    page.locator("[data-testid=stFileUploader] input[type=file]").first.set_input_files(
        str(big))
    page.get_by_text("big.csv: 86,000 rows").wait_for(timeout=60_000)
    _command(page, "classify as billing / bug / feature")
    _plan(page)
    page.get_by_text("classify 86,000 rows of column 'text'").wait_for()
    toggle = page.get_by_text("Advanced: edit the plan as JSON")
    editor = page.get_by_label("Parameters (JSON)", exact=True)
    timings = []
    for n in range(3):  # open, close, open: each click is one rerun over the 86k rows
        started = time.monotonic()
        toggle.click()
        shown = n % 2 == 0
        wait_until(lambda shown=shown: editor.count() == (1 if shown else 0), timeout=15,
                   what=f"the JSON editor {'shown' if shown else 'hidden'}")
        _settle(page)
        timings.append(time.monotonic() - started)
    assert editor.count() == 1
    assert min(timings) < 1.0, timings


#: Watched over unwatched run time above which the page starves the run (noise on a busy
#: 2-core machine stays well below it; the starving page was at 3.7).
STARVED = 1.5


def test_issue_12_watching_a_run_does_not_slow_it(grid_ui: tuple[str, Store],
                                                   browser: Any) -> None:
    url, store = grid_ui
    tab = browser.new_page(viewport={"width": 1280, "height": 1600})
    tab.set_default_timeout(60_000)
    try:
        figures = measure(tab, url, store, UI_PASSWORD, command="noop 200 sleep 50",
                          repeats=1)
    finally:
        tab.close()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "watching.json").write_text(json.dumps({
        "unwatched_s": figures.headless_s, "watched_s": figures.watched_s,
        "slowdown": figures.slowdown, "cost_pct": figures.cost_pct}))
    logger.warning("watching cost %.1f%% (unwatched %s s, watched %s s)",
                   figures.cost_pct, figures.headless_s, figures.watched_s)
    assert all(s > 0 for s in figures.headless_s + figures.watched_s), figures
    assert figures.slowdown < STARVED, figures
