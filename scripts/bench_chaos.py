"""The AEON chaos benchmark: 20 worker kills in 60 s on a 4-worker local grid.

``benchmarks()`` runs :func:`scripts.chaos.run_chaos` once (about 3 minutes: the same job
without chaos, then with it) and returns its figures; the full JSON is logged at INFO.
AEON's targets: 100 % completed, 0 recorded twice, detection p95 <= 6 s, restart p95 <= 10 s.
"""

from __future__ import annotations

import logging

from scripts.chaos import run_chaos

logger = logging.getLogger(__name__)

WORKERS, KILLS, DURATION_S = 4, 20, 60.0


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def benchmarks() -> list[tuple[str, str, str]]:
    """One chaos run's figures as (benchmark, figure, unit) rows."""
    report = run_chaos(WORKERS, KILLS, DURATION_S)
    logger.info("chaos: %s", report.to_json())
    name = f"chaos: {report.kills} kills in {DURATION_S:g}s, {WORKERS} workers"
    return [
        (f"{name}, completed", f"{100 * report.completed / max(1, report.total):.1f}",
         f"% of {report.total} subtasks"),
        (f"{name}, recorded twice", str(report.recorded_twice), "subtasks"),
        (f"{name}, executed twice", str(report.executed_twice), "subtasks"),
        (f"{name}, detection p50 / p95", f"{_s(report.detect_p50_s)} / "
         f"{_s(report.detect_p95_s)}", "s"),
        (f"{name}, restart p95", _s(report.restart_p95_s),
         f"s (cold start of the grid: {report.cold_start_s:.1f}s)"),
        (f"{name}, slowdown", _s(report.slowdown), "x the same job without chaos"),
    ]
