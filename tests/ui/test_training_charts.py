"""Training charts and numbers (issue 15 item 9): separate titled axes, whole rounds, a
first round that shows, and bytes as people write them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from master_app.ui import training_charts as charts


@dataclass
class Round:
    round: int
    train_loss: float | None
    accuracy: float | None
    merged: list[int] = field(default_factory=lambda: [1, 2])
    failed: list[str] = field(default_factory=list)
    dropped: int = 0
    bytes_down: int = 52_144
    bytes_up: int = 52_144
    duration_s: float = 1.234
    left: list[str] = field(default_factory=list)


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1 KiB"), (52_144, "50.9 KiB"),
    (1536, "1.5 KiB"), (1_310_720, "1.25 MiB"), (125_829_120, "120 MiB"),
    (3 * 1024**3, "3 GiB"), (None, "—"),
])
def test_human_bytes(n: int | None, text: str) -> None:
    assert charts.human_bytes(n) == text


def test_the_old_unreadable_figure_is_gone() -> None:
    """The issue saw "50.9219 KiB": three significant figures at most."""
    assert charts.human_bytes(50.9219 * 1024) == "50.9 KiB"


def _spec(chart: Any) -> dict[str, Any]:
    spec: dict[str, Any] = chart.to_dict()
    return spec


def test_loss_and_accuracy_are_separate_charts_with_titles_and_own_axes() -> None:
    frame = charts.round_frame([Round(1, 2.31, 0.41), Round(2, 1.70, 0.63),
                                Round(3, 1.12, 0.78)])
    loss, acc = _spec(charts.loss_chart(frame)), _spec(charts.accuracy_chart(frame))
    assert loss["title"] != acc["title"] and "loss" in loss["title"].lower()
    assert "accuracy" in acc["title"].lower()
    assert loss["encoding"]["y"]["field"] == "train loss"
    assert acc["encoding"]["y"]["field"] == "held-out accuracy"
    assert acc["encoding"]["y"]["scale"]["domain"] == [0, 1]  # a percentage axis of its own
    assert acc["encoding"]["y"]["axis"]["format"] == ".0%"
    assert loss["encoding"]["y"]["title"] and acc["encoding"]["y"]["title"]


def test_rounds_are_whole_numbers_on_the_axis() -> None:
    frame = charts.round_frame([Round(1, 2.0, 0.5), Round(2, 1.5, 0.6)])
    x = _spec(charts.loss_chart(frame))["encoding"]["x"]
    assert x["axis"]["format"] == "d"  # never "1.000000"
    assert x["axis"]["values"] == [1, 2]
    assert frame["round"].dtype.kind == "i"


def test_one_round_still_draws_a_point_on_a_sensible_axis() -> None:
    """After round 1 the live chart was blank: a single value needs a point mark and an
    x domain wider than one number."""
    frame = charts.round_frame([Round(1, 2.0, 0.5)])
    spec = _spec(charts.accuracy_chart(frame))
    assert spec["mark"]["point"]["filled"] is True
    assert spec["encoding"]["x"]["scale"]["domain"] == [0.5, 1.5]  # the point in the middle
    assert spec["encoding"]["x"]["axis"]["values"] == [1]
    data = next(iter(spec["datasets"].values()))
    assert data == [{"round": 1, "held-out accuracy": 0.5}]


def test_a_round_without_a_loss_is_left_out_not_drawn_as_zero() -> None:
    frame = charts.round_frame([Round(1, None, 0.5), Round(2, 1.2, 0.6)])
    data = next(iter(_spec(charts.loss_chart(frame))["datasets"].values()))
    assert data == [{"round": 2, "train loss": 1.2}]


def test_the_table_and_totals_read_as_people_write_bytes() -> None:
    frame = charts.round_frame([Round(1, 2.0, 0.5), Round(2, 1.5, 0.6)])
    table = charts.round_table(frame)
    assert list(table["bytes sent"]) == ["50.9 KiB", "50.9 KiB"]
    assert charts.wire_total(frame) == "204 KiB"
    bars = _spec(charts.bytes_chart(frame))
    assert bars["title"] == "Weights on the wire per round"
    assert bars["encoding"]["y"]["title"] == "KiB"


def test_the_empty_frame_has_the_columns() -> None:
    frame = charts.round_frame([])
    assert "train loss" in frame.columns and len(frame) == 0
