"""The Training page's numbers and charts, as data (no Streamlit calls, no torch).

Loss and accuracy live on different scales, so each gets its own chart with a title and
its own y axis; rounds are whole numbers on every x axis (``1, 2, 3``, never
``1.000000``), and a run with one round so far still shows its point. Bytes read as
people write them (:func:`human_bytes`: ``"50.9 KiB"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

if TYPE_CHECKING:
    import altair as alt

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


class RoundLike(Protocol):
    """What the charts read of a round report (``master_app.federated.rounds.RoundReport``)."""

    @property
    def round(self) -> int: ...
    @property
    def train_loss(self) -> float | None: ...
    @property
    def accuracy(self) -> float | None: ...
    @property
    def merged(self) -> Sequence[Any]: ...
    @property
    def failed(self) -> Sequence[Any] | Mapping[Any, Any]: ...
    @property
    def dropped(self) -> int: ...
    @property
    def bytes_down(self) -> int: ...
    @property
    def bytes_up(self) -> int: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def left(self) -> Sequence[str]: ...


def human_bytes(n: float | None) -> str:
    """``n`` bytes with a binary unit and three significant figures at most:
    ``512 B``, ``50.9 KiB``, ``1.25 MiB``, ``120 MiB``; ``"—"`` for None."""
    if n is None or pd.isna(n):
        return "—"
    value = float(n)
    unit = 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{value:.0f} B"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {_UNITS[unit]}"


def round_frame(reports: Sequence[RoundLike]) -> pd.DataFrame:
    """One row per round with real numbers (for charts): round (int), train loss,
    held-out accuracy, merged, failed, dropped, bytes sent / received, seconds, who left."""
    frame = pd.DataFrame(
        [{"round": int(r.round), "train loss": r.train_loss, "held-out accuracy": r.accuracy,
          "merged": len(r.merged), "failed": len(r.failed), "dropped": r.dropped,
          "bytes sent": int(r.bytes_down), "bytes received": int(r.bytes_up),
          "seconds": round(r.duration_s, 2), "workers that left": ", ".join(r.left)}
         for r in reports],
        columns=["round", "train loss", "held-out accuracy", "merged", "failed", "dropped",
                 "bytes sent", "bytes received", "seconds", "workers that left"])
    frame["round"] = frame["round"].astype("int64")
    for column in ("train loss", "held-out accuracy"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def round_table(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`round_frame` for people: bytes as ``"50.9 KiB"``, 4-digit loss and accuracy."""
    table = frame.copy()
    for column in ("bytes sent", "bytes received"):
        table[column] = [human_bytes(v) for v in table[column]]
    for column in ("train loss", "held-out accuracy"):
        table[column] = table[column].round(4)
    return table


def wire_total(frame: pd.DataFrame) -> str:
    """All bytes sent and received over the run, in words."""
    return human_bytes(float(frame[["bytes sent", "bytes received"]].to_numpy().sum()))


def _round_axis(frame: pd.DataFrame) -> alt.X:
    """An x axis of whole rounds (one tick per round up to 20, never fractions)."""
    import altair as alt

    last = int(frame["round"].max()) if len(frame) else 1
    first = int(frame["round"].min()) if len(frame) else 1
    return alt.X("round:Q", title="round",  # half a round of margin: no point on an edge
                 scale=alt.Scale(domain=[first - 0.5, last + 0.5], nice=False, zero=False),
                 axis=alt.Axis(format="d", tickMinStep=1,
                               values=list(range(first, last + 1)) if last - first < 20
                               else alt.Undefined))


def metric_chart(frame: pd.DataFrame, column: str, *, title: str, y_title: str,
                 colour: str, zero_to_one: bool = False) -> alt.Chart:
    """One metric per round: a line with a point on every round, its own axis and title."""
    import altair as alt

    y_scale = alt.Scale(domain=[0, 1]) if zero_to_one else alt.Scale(zero=False)
    data = frame[["round", column]].dropna()
    chart: alt.Chart = (
        alt.Chart(data, title=title)
        .mark_line(point=alt.OverlayMarkDef(size=60, filled=True, color=colour), color=colour)
        .encode(x=_round_axis(frame),
                y=alt.Y(f"{column}:Q", title=y_title, scale=y_scale,
                        axis=alt.Axis(format=".0%" if zero_to_one else ",.3~f")),
                tooltip=[alt.Tooltip("round:Q", format="d"),
                         alt.Tooltip(f"{column}:Q", format=".4f")])
        .properties(height=240)
    )
    return chart


def loss_chart(frame: pd.DataFrame) -> alt.Chart:
    """Training loss per round."""
    return metric_chart(frame, "train loss", title="Training loss (lower is better)",
                        y_title="mean train loss", colour="#f59e0b")


def accuracy_chart(frame: pd.DataFrame) -> alt.Chart:
    """Held-out accuracy per round, on a 0–100 % axis."""
    return metric_chart(frame, "held-out accuracy", title="Held-out accuracy (higher is better)",
                        y_title="accuracy", colour="#6366f1", zero_to_one=True)


def bytes_chart(frame: pd.DataFrame) -> alt.Chart:
    """Bytes sent to and received from the workers per round (KiB axis, grouped bars)."""
    import altair as alt

    long = frame.melt(id_vars=["round"], value_vars=["bytes sent", "bytes received"],
                      var_name="direction", value_name="bytes")
    long["KiB"] = long["bytes"] / 1024
    long["size"] = [human_bytes(b) for b in long["bytes"]]
    chart: alt.Chart = (
        alt.Chart(long, title="Weights on the wire per round")
        .mark_bar()
        .encode(x=alt.X("round:O", title="round", axis=alt.Axis(labelAngle=0)),
                xOffset="direction:N",
                y=alt.Y("KiB:Q", title="KiB", axis=alt.Axis(format=",.0f")),
                color=alt.Color("direction:N", title=None,
                                scale=alt.Scale(range=["#6366f1", "#06b6d4"])),
                tooltip=["round:O", "direction:N", alt.Tooltip("size:N", title="size")])
        .properties(height=220)
    )
    return chart
