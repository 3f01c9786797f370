"""Heartbeat alerts: offline / back posted to a loopback webhook and written to the summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from database.backends.sqlite import SqliteStore
from database.models import WorkerStatus
from nexus_ops.heartbeat import main
from tests.ops.loopback import HealthServer, webhook_receiver
from tests.support.servers import free_port


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The registry path, with the heartbeat configured to use it and write a summary."""
    for var in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_KEY", "GITHUB_ACTIONS"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "registry.db"
    monkeypatch.setenv("NADG_REGISTRY", str(path))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    monkeypatch.setenv("NADG_HEARTBEAT_TIMEOUT_S", "2")
    monkeypatch.setenv("NADG_HEARTBEAT_RETRY_DELAY_S", "0")
    return path


def _setup(path: Path, alive_url: str) -> dict[str, int]:
    """One worker coming back (offline, answers), one going offline (live, 2nd failure)."""
    store = SqliteStore(path)
    back = store.add_worker(alive_url, name="phoenix", status=WorkerStatus.OFFLINE)
    dying = store.add_worker(f"http://127.0.0.1:{free_port()}", name="icarus")
    store.record_ping(dying.id, ok=False, error="first failure")  # one more and it is offline
    steady = store.add_worker(alive_url + "/steady", name="steady")
    store.close()
    return {"back": back.id, "dying": dying.id, "steady": steady.id}


def test_offline_and_back_go_to_the_webhook_and_the_summary(
        registry: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = registry
    with HealthServer() as alive, webhook_receiver() as (hook, hook_url):
        ids = _setup(path, alive.url)
        monkeypatch.setenv("NADG_ALERT_WEBHOOK_URL", hook_url)
        assert main([]) == 0
    out = capsys.readouterr().out
    assert f"alert: worker #{ids['dying']} icarus" in out and "went offline" in out
    assert f"alert: worker #{ids['back']} phoenix" in out and "came back" in out
    assert len(hook.bodies) == 1  # one message per run, not one per worker
    body = hook.bodies[0]
    assert body["text"] == body["content"]  # Slack reads text, Discord content
    assert "1 worker(s) went offline" in body["text"] and "icarus" in body["text"]
    assert "1 worker(s) came back" in body["text"] and "phoenix" in body["text"]
    assert "steady" not in body["text"]  # no change, no alert
    summary = (tmp_path / "summary.md").read_text()
    assert "#### Alerts" in summary and "icarus" in summary and "phoenix" in summary
    assert "Posted to the alert webhook" in summary
    store = SqliteStore(path)
    assert store.get_worker(ids["dying"]).status is WorkerStatus.OFFLINE
    assert store.get_worker(ids["back"]).status is WorkerStatus.ACTIVE
    store.close()

    # The next run changes nothing: nothing is posted again.
    with webhook_receiver() as (quiet, quiet_url):
        monkeypatch.setenv("NADG_ALERT_WEBHOOK_URL", quiet_url)
        main([])
    assert quiet.bodies == []


def test_a_failing_webhook_never_fails_the_heartbeat(
        registry: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = registry
    with HealthServer() as alive, webhook_receiver(status=500) as (hook, hook_url):
        _setup(path, alive.url)
        monkeypatch.setenv("NADG_ALERT_WEBHOOK_URL", hook_url)
        assert main([]) == 0
    assert len(hook.bodies) == 1
    err = capsys.readouterr().err
    assert "the alert webhook answered HTTP 500" in err
    assert hook_url not in err  # the URL carries the channel's secret
    assert "Not posted: the alert webhook answered HTTP 500" in (
        tmp_path / "summary.md").read_text()


def test_a_bad_webhook_url_is_one_clear_line(
        registry: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NADG_ALERT_WEBHOOK_URL", "hooks.slack.com/services/x")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: NADG_ALERT_WEBHOOK_URL must be an http(s) URL"), err
