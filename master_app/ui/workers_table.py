"""The Workers page's table, health summary and latency chart, as data (no Streamlit calls).

:func:`worker_frame` is the registry as a sortable frame (real numbers and timestamps, so
a click on a header sorts by value, not by text); :func:`column_config` says how each column
is shown (status as a coloured pill, last ping as a 24-hour UTC time beside "12s ago",
latency in ms, the URL whole: no pandas Styler, whose display strings would undo all of that);
:func:`health_summary` is the row of numbers at the top; :func:`latency_chart` is an
Altair chart with a 24-hour UTC time axis and a latency axis in whole milliseconds.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from database.models import PingRecord, WorkerNode, WorkerStatus
from master_app.ui.formatting import age

if TYPE_CHECKING:
    import altair as alt

#: Status pills: each status with a colour that reads on light and dark backgrounds.
STATUS_PILLS = {
    WorkerStatus.ACTIVE.value: "#10b98155",
    WorkerStatus.BUSY.value: "#eab30866",
    WorkerStatus.DRAINING.value: "#f9731666",
    WorkerStatus.OFFLINE.value: "#ef444466",
}
#: Circuit breaker pills.
CIRCUIT_PILLS = {"closed": "#10b98133", "half_open": "#eab30866", "open": "#ef444466"}

#: The time format of the latency chart and of every worker time on the page (24-hour).
TIME_FORMAT = "%H:%M:%S"


def worker_frame(workers: Sequence[WorkerNode], now: datetime | None = None) -> pd.DataFrame:
    """One row per worker, live workers first. Missing values stay missing (the table's
    placeholder shows them as a dash), never the text "None". ``last ping`` is the time
    (it sorts); ``ago`` says how long since, as of ``now`` (recomputed on every refresh:
    a browser-side "distance" format would keep its first text while the data stays the
    same)."""
    rows = [
        {
            "status": [str(w.status)],  # one pill (a list column: see column_config)
            "name": w.label,
            "url": w.vm_url,
            "last ping": w.last_ping,
            "ago": age(w.last_ping, now),
            "latency ms": w.last_latency_ms,
            "failures": w.consecutive_failures,
            "circuit": [str(w.circuit_state)],
            "capacity": w.max_concurrency,
            "tasks done": w.total_tasks,
            "version": w.version,
            "id": w.id,
        }
        for w in sorted(workers, key=lambda w: (not w.status.live, w.id))
    ]
    frame = pd.DataFrame(rows, columns=list(COLUMN_HELP))
    frame["last ping"] = pd.to_datetime(frame["last ping"], utc=True)
    frame["latency ms"] = pd.to_numeric(frame["latency ms"], errors="coerce")
    return frame


#: What each column means (shown as the header's tooltip).
COLUMN_HELP = {
    "status": "active / busy take work; draining finishes what it has; offline missed its "
              "last pings",
    "name": "the worker's name, or its URL when it has none",
    "url": "where the master reaches the worker",
    "last ping": "when the worker last answered GET /health (UTC)",
    "ago": "how long since it last answered",
    "latency ms": "how long its last good /health took",
    "failures": "failed pings in a row (2 make it offline)",
    "circuit": "the master's circuit breaker: open means the dispatcher skips it for now",
    "capacity": "subtasks it runs at once",
    "tasks done": "subtasks it completed",
    "version": "the worker's software version",
    "id": "registry id",
}


def column_config() -> dict[str, Any]:
    """``st.dataframe`` column configs for :func:`worker_frame` (imported lazily)."""
    import streamlit as st

    cc = st.column_config
    return {
        "status": cc.MultiselectColumn("status", help=COLUMN_HELP["status"], width="small",
                                       options=list(STATUS_PILLS),
                                       color=list(STATUS_PILLS.values())),
        "name": cc.TextColumn("name", help=COLUMN_HELP["name"], width="small"),
        "url": cc.LinkColumn("url", help=COLUMN_HELP["url"], width="large"),
        "last ping": cc.DatetimeColumn("last ping", help=COLUMN_HELP["last ping"],
                                       format="HH:mm:ss", timezone="UTC"),
        "ago": cc.TextColumn("ago", help=COLUMN_HELP["ago"], width="small"),
        "latency ms": cc.NumberColumn("latency", help=COLUMN_HELP["latency ms"],
                                      format="%.0f ms"),
        "failures": cc.NumberColumn("failures", help=COLUMN_HELP["failures"], format="%d"),
        "circuit": cc.MultiselectColumn("circuit", help=COLUMN_HELP["circuit"], width="small",
                                        options=list(CIRCUIT_PILLS),
                                        color=list(CIRCUIT_PILLS.values())),
        "capacity": cc.NumberColumn("capacity", help=COLUMN_HELP["capacity"], format="%d"),
        "tasks done": cc.NumberColumn("tasks done", help=COLUMN_HELP["tasks done"],
                                      format="%d"),
        "version": cc.TextColumn("version", help=COLUMN_HELP["version"], width="small"),
        "id": cc.NumberColumn("id", help=COLUMN_HELP["id"], format="%d", width="small"),
    }


@dataclass(frozen=True)
class HealthSummary:
    """The numbers at the top of the Workers page."""

    live: int
    total: int
    offline: int
    draining: int
    median_latency_ms: float | None
    last_ping: datetime | None


def health_summary(workers: Iterable[WorkerNode]) -> HealthSummary:
    """Counts by status, the median latency of live workers and the newest ping."""
    ws = list(workers)
    latencies = [w.last_latency_ms for w in ws if w.status.live and w.last_latency_ms is not None]
    pings = [w.last_ping for w in ws if w.last_ping is not None]
    return HealthSummary(
        live=sum(1 for w in ws if w.status.live), total=len(ws),
        offline=sum(1 for w in ws if w.status is WorkerStatus.OFFLINE),
        draining=sum(1 for w in ws if w.status is WorkerStatus.DRAINING),
        median_latency_ms=statistics.median(latencies) if latencies else None,
        last_ping=max(pings) if pings else None,
    )


def latency_frame(pings: Iterable[tuple[str, PingRecord]]) -> pd.DataFrame:
    """Good pings as ``at`` (UTC), ``worker`` and ``latency ms``, oldest first."""
    rows = [{"at": p.at, "worker": label, "latency ms": float(p.latency_ms)}
            for label, p in pings if p.ok and p.latency_ms is not None]
    frame = pd.DataFrame(rows, columns=["at", "worker", "latency ms"])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame.sort_values("at", kind="stable").reset_index(drop=True)


def latency_chart(frame: pd.DataFrame) -> alt.Chart:
    """Latency over time, one coloured line with points per worker.

    The time axis is 24-hour UTC (``%H:%M:%S``, as the table), never Vega's automatic
    multi-format that prints ``.800`` for pings within one second; the latency axis has
    whole-millisecond ticks and a title.
    """
    import altair as alt

    chart: alt.Chart = (
        alt.Chart(frame, title="Health-check latency per worker (ms)")
        .mark_line(point=True, interpolate="monotone")
        .encode(
            x=alt.X("at:T", title="time (UTC)", scale=alt.Scale(type="utc", padding=12),
                    axis=alt.Axis(format=TIME_FORMAT, labelAngle=0, tickCount=6,
                                  labelOverlap=True)),
            y=alt.Y("latency ms:Q", title=None, scale=alt.Scale(zero=True),  # unit: the title
                    axis=alt.Axis(format=",.0f", tickMinStep=1)),
            color=alt.Color("worker:N", title="worker", legend=alt.Legend(orient="bottom")),
            tooltip=[alt.Tooltip("worker:N"),
                     alt.Tooltip("at:T", title="time (UTC)", format=TIME_FORMAT,
                                 formatType="utc"),
                     alt.Tooltip("latency ms:Q", title="latency (ms)", format=",.1f")],
        )
        .properties(height=260)
    )
    return chart
