"""A short chaos run: workers and the master killed mid-job, nothing lost, nothing stored twice."""

from __future__ import annotations

import json

import pytest

from scripts.chaos import main, percentile, run_chaos


def test_short_chaos_run_loses_nothing_and_measures_everything() -> None:
    # 3 workers, 2 kills: one is always up, so this checks that no result is lost or stored
    # twice across kills and a master restart, not how long the master waits when every
    # worker is down at once (scripts.bench_chaos runs AEON's 20 kills for that).
    report = run_chaos(workers=3, kills=2, duration_s=4, master_kills=1, sleep_ms=200, seed=7)
    assert report.total > 0 and report.completed == report.total, report.to_json()
    assert report.recorded_twice == 0
    assert report.kills == 2 and report.master_kills == 1
    # the workers are always busy, so a master runs into a killed one
    assert report.detect_p95_s is not None and 0 <= report.detect_p95_s < 30
    assert report.restart_p95_s is not None and 0 < report.restart_p95_s < 60
    assert report.slowdown is not None and report.slowdown > 0
    assert json.loads(report.to_json())["completed"] == report.total


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 95) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 21)], 95) == 19.0


def test_bad_arguments_are_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workers", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
