"""End to end in headless Chromium: the grid started as ``make up`` starts it, used by a person.

``python -m scripts.grid --workers 2 --ui`` runs as a subprocess (2 real workers, an SQLite
registry in tmp, a random token, Streamlit on a free port); Playwright drives Debian's
chromium: upload examples/tickets.csv, plan, run, wait for the result table, read its rows.
The screenshot lands in test-artifacts/ (docs/screenshot.png is a copy of a good one).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser_grid import grid_with_ui

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
LABELS = {"billing", "bug", "feature"}
UI_PASSWORD = "browser-test-password"


@pytest.fixture(scope="module")
def grid_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``make up`` on a free port with a registry of its own; yields the UI's URL."""
    with grid_with_ui(tmp_path_factory.mktemp("grid"), password=UI_PASSWORD) as (url, _):
        yield url


def _table_rows(frame: Any) -> list[list[str]]:
    """The rows a Streamlit dataframe shows (its grid's accessible cells), header excluded."""
    rows = []
    for row in frame.locator("[role=row]").all():
        cells = [c.inner_text() for c in row.locator("[role=gridcell]").all()]
        if cells:
            rows.append(cells)
    return rows


def test_a_person_runs_a_classification_from_the_browser(grid_ui: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    try:
        page.goto(grid_ui)
        # Only the login until the person signs in; a wrong password is refused.
        password = page.get_by_label("Password", exact=True)
        password.wait_for(timeout=60_000)
        assert page.get_by_label("What should the grid do?").count() == 0
        password.fill("not-the-password")
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.get_by_text("Wrong password.").wait_for(timeout=30_000)
        assert page.get_by_label("What should the grid do?").count() == 0
        page.get_by_label("Password", exact=True).fill(UI_PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        command = page.get_by_label("What should the grid do?", exact=True)
        command.wait_for(timeout=60_000)
        # The sidebar tells how the master is set up, never the token itself.
        page.get_by_text("2 live of 2").wait_for(timeout=30_000)
        command.fill("classify as billing / bug / feature")
        page.locator("input[type=file]").first.set_input_files(
            str(REPO / "examples" / "tickets.csv"))
        page.get_by_text("tickets.csv: 40 rows").wait_for(timeout=30_000)

        page.get_by_role("button", name="Plan", exact=True).click()
        page.get_by_text("zero-shot classify each row as billing / bug / feature").wait_for(
            timeout=30_000)
        page.get_by_role("button", name="Run", exact=True).click()

        page.get_by_text("completed: 10 of 10 subtasks completed").wait_for(timeout=120_000)
        page.get_by_text("Results (40 rows)").wait_for(timeout=30_000)
        page.wait_for_timeout(500)  # let the charts finish drawing before the screenshot
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ui-finished-task.png"), full_page=True)

        results = page.locator("[data-testid=stDataFrame]").last
        rows = _table_rows(results)
        assert len(rows) >= 5, rows
        assert [r[0] for r in rows[:5]] == ["1", "2", "3", "4", "5"]  # the input's ids
        assert rows[0][1] == "I was charged twice for my subscription this month"
        assert rows[1][1] == "The app crashes every time I open the settings page"
        assert all(r[2] in LABELS for r in rows), rows
        assert page.get_by_role("button", name="Download CSV").is_visible()
    finally:
        page.close()
