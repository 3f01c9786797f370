"""The bench runner and the simulated-makespan benchmark."""

from __future__ import annotations

from scripts import bench, bench_dispatch


def test_runner_notes_missing_modules_and_renders_a_table() -> None:
    rows, notes = bench.collect(("scripts.no_such_bench",))
    assert rows == [] and notes == ["scripts.no_such_bench: not present, skipped"]
    table = bench.render([("a", "1.0", "s")], notes)
    assert table.splitlines()[:3] == ["| benchmark | figure | unit |", "| --- | ---: | --- |",
                                      "| a | 1.0 | s |"]


def test_simulated_makespan_is_close_to_ideal() -> None:
    rows = {name: float(figure) for name, figure, _ in bench_dispatch.bench_makespan()}
    efficiency = rows["dispatch efficiency (ideal / measured)"]
    assert 0.5 < efficiency <= 1.0, rows
