"""The Workers page's table, health numbers and latency chart as data (issue 15 item 10)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from database.models import PingRecord, WorkerNode, WorkerStatus
from master_app.ui import workers_table as wt

NOW = datetime(2026, 12, 1, 15, 0, 0, tzinfo=UTC)


def _worker(i: int, status: WorkerStatus, latency: float | None = None,
            ping: datetime | None = None, name: str | None = None) -> WorkerNode:
    return WorkerNode(id=i, vm_url=f"https://worker-{i}.example-spaces.hf.space/very/long/path",
                      status=status, name=name, last_latency_ms=latency, last_ping=ping)


def test_missing_values_stay_missing_and_numbers_stay_numbers() -> None:
    frame = wt.worker_frame([_worker(1, WorkerStatus.OFFLINE),
                             _worker(2, WorkerStatus.ACTIVE, 12.5, NOW, "beta")],
                            now=NOW + timedelta(seconds=75))
    assert list(frame["id"]) == [2, 1]  # live first
    offline = frame.iloc[1]
    assert offline["version"] is None and frame["latency ms"].isna().iloc[1]
    assert frame["last ping"].isna().iloc[1]
    assert "None" not in frame.astype(str).drop(columns=["version", "last ping",
                                                         "latency ms"]).to_numpy()
    assert frame["latency ms"].dtype.kind == "f"  # sorts by value
    assert str(frame["last ping"].dtype).startswith("datetime64")
    assert list(frame["ago"]) == ["1m ago", "never"]  # recomputed on every refresh
    assert offline["url"] == "https://worker-1.example-spaces.hf.space/very/long/path"  # whole


def test_column_config_shows_status_pills_distance_times_and_full_urls() -> None:
    config = wt.column_config()
    assert config["status"]["type_config"]["type"] == "multiselect"
    assert [o["value"] for o in config["status"]["type_config"]["options"]] == [
        "active", "busy", "draining", "offline"]
    assert config["last ping"]["type_config"]["format"] == "HH:mm:ss"  # 24-hour
    assert config["last ping"]["type_config"]["timezone"] == "UTC"
    assert config["latency ms"]["type_config"]["format"] == "%.0f ms"
    assert config["url"]["width"] == "large" and config["url"]["type_config"]["type"] == "link"
    assert all(c.get("help") for c in config.values())


def test_health_summary() -> None:
    summary = wt.health_summary([
        _worker(1, WorkerStatus.ACTIVE, 10.0, NOW - timedelta(seconds=30)),
        _worker(2, WorkerStatus.BUSY, 30.0, NOW),
        _worker(3, WorkerStatus.OFFLINE, 900.0, NOW - timedelta(hours=1)),
        _worker(4, WorkerStatus.DRAINING),
    ])
    assert (summary.live, summary.total, summary.offline, summary.draining) == (2, 4, 1, 1)
    assert summary.median_latency_ms == 20.0  # live workers only
    assert summary.last_ping == NOW


def test_latency_chart_has_a_24_hour_utc_axis_and_whole_milliseconds() -> None:
    """The issue saw ".800 .800 .800" (Vega's automatic millisecond labels for pings
    within a second) and 12-hour times beside a 24-hour table."""
    pings = [("alpha", PingRecord(1, NOW + timedelta(milliseconds=200 * i), True, 0.8 + i))
             for i in range(4)]
    pings.append(("alpha", PingRecord(1, NOW, False, None, "refused")))
    frame = wt.latency_frame(pings)
    assert len(frame) == 4  # failed pings have no latency to draw
    spec = wt.latency_chart(frame).to_dict()
    x, y = spec["encoding"]["x"], spec["encoding"]["y"]
    assert x["axis"]["format"] == "%H:%M:%S" and x["scale"]["type"] == "utc"
    assert "UTC" in x["title"]
    assert y["axis"]["format"] == ",.0f" and "(ms)" in spec["title"]
    assert spec["mark"]["point"] is True
