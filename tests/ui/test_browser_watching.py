"""Issue 12, item 3: watching a run is (nearly) free.

The same task runs from the master's page twice on one grid (``make up`` as a person starts
it): once with the page left right after Run, once with the page open until the run ends,
each timed by the registry (:mod:`scripts.bench_watching`). The figure goes to
``test-artifacts/watching.json`` and the log; the test fails when watching slows the run
by half again or more (before the snapshot and the bounded poll, it was 3.7x).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from database.store import Store
from scripts.bench_watching import measure
from tests.support.browser_grid import ARTIFACTS, grid_with_ui

pytestmark = [pytest.mark.browser, pytest.mark.slow]

logger = logging.getLogger(__name__)
PASSWORD = "browser-watching-test-password"
#: Watched over unwatched run time above which the page starves the run (noise on a busy
#: 2-core machine stays well below it; the starving page was at 3.7).
STARVED = 1.5


@pytest.fixture(scope="module")
def grid_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:
    with grid_with_ui(tmp_path_factory.mktemp("grid"), password=PASSWORD) as grid:
        yield grid


def test_watching_a_run_does_not_slow_it(grid_ui: tuple[str, Store], browser: Any) -> None:
    url, store = grid_ui
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.set_default_timeout(60_000)
    try:
        figures = measure(page, url, store, PASSWORD, command="noop 200 sleep 50", repeats=1)
    finally:
        page.close()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "watching.json").write_text(json.dumps({
        "unwatched_s": figures.headless_s, "watched_s": figures.watched_s,
        "slowdown": figures.slowdown, "cost_pct": figures.cost_pct}))
    logger.warning("watching cost %.1f%% (unwatched %s s, watched %s s)",
                   figures.cost_pct, figures.headless_s, figures.watched_s)
    assert all(s > 0 for s in figures.headless_s + figures.watched_s), figures
    assert figures.slowdown < STARVED, figures
