"""The heartbeat against real servers on loopback: alive, HTTP 500, closed port, hanging."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from database.backends.sqlite import SqliteStore
from database.models import WorkerStatus
from nexus_ops.health import HeartbeatSettings, InFlight, ping_workers
from tests.database.health_apps import (
    Crowd,
    alive_app,
    crowd_app,
    failing_app,
    hanging_app,
    trickling_app,
)
from tests.support.servers import REPO_ROOT, free_port, serve_app

FAST = HeartbeatSettings(timeout_s=0.5, concurrency=4, retries=1, retry_delay_s=0.05)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    release = threading.Event()
    with serve_app(alive_app()) as alive, serve_app(failing_app()) as failing, \
            serve_app(hanging_app(release)) as hanging:
        yield {"alive": alive, "failing": failing, "hanging": hanging,
               "closed": f"http://127.0.0.1:{free_port()}"}
        release.set()


async def test_a_trickling_answer_is_cut_at_the_timeout(tmp_path: Path) -> None:
    # every read comes well inside the timeout, the whole answer (about 5 s) does not
    store = SqliteStore(tmp_path / "registry.db")
    with serve_app(trickling_app(gap_s=0.1)) as url:
        worker = store.add_worker(url, name="trickle")
        report = await ping_workers(store, settings=HeartbeatSettings(
            timeout_s=0.5, concurrency=1, retries=0))
    outcome = report.outcomes[0]
    assert not outcome.probe.ok and outcome.probe.error == "timed out after 0.5s"
    assert store.get_worker(worker.id).consecutive_failures == 1
    store.close()


async def test_statuses_after_one_and_two_runs(servers: dict[str, str], tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "registry.db")
    ids = {name: store.add_worker(url, name=name).id for name, url in servers.items()}
    drain = store.add_worker(servers["alive"] + "/drain", name="draining-but-alive",
                             status=WorkerStatus.DRAINING)

    first = await ping_workers(store, settings=FAST)
    assert first.recorded == 5 and first.alive == 1
    by_name = {o.worker.name: o for o in first.outcomes}
    assert by_name["alive"].probe.ok and by_name["alive"].probe.version == "9.9.9"
    assert by_name["failing"].probe.error == "HTTP 500"
    assert by_name["hanging"].probe.error == "timed out after 0.5s"
    assert by_name["closed"].probe.attempts == 2  # one quick retry
    state = {name: store.get_worker(i) for name, i in ids.items()}
    assert {n: (w.status, w.consecutive_failures) for n, w in state.items()} == {
        "alive": (WorkerStatus.ACTIVE, 0), "failing": (WorkerStatus.ACTIVE, 1),
        "hanging": (WorkerStatus.ACTIVE, 1), "closed": (WorkerStatus.ACTIVE, 1)}
    assert state["alive"].last_ping is not None and state["alive"].last_latency_ms is not None

    await ping_workers(store, settings=FAST)
    state = {name: store.get_worker(i) for name, i in ids.items()}
    assert {n: (w.status, w.consecutive_failures) for n, w in state.items()} == {
        "alive": (WorkerStatus.ACTIVE, 0), "failing": (WorkerStatus.OFFLINE, 2),
        "hanging": (WorkerStatus.OFFLINE, 2), "closed": (WorkerStatus.OFFLINE, 2)}
    assert store.get_worker(drain.id).status is WorkerStatus.DRAINING  # pinged, not revived
    assert len(store.recent_pings(ids["failing"])) == 2
    store.close()


async def test_two_hundred_workers_bounded_concurrency(tmp_path: Path) -> None:
    limit = 8
    crowd = Crowd(limit=limit)
    store = SqliteStore(tmp_path / "registry.db")
    settings = HeartbeatSettings(timeout_s=2.0, concurrency=limit, retries=1, retry_delay_s=0)
    with serve_app(crowd_app(crowd, hold_s=1.0)) as url:
        for i in range(200):
            store.add_worker(f"{url}/w/{i}")
        gauge = InFlight()
        report = await ping_workers(store, settings=settings, gauge=gauge)
    assert crowd.served == 200 and report.alive == 200 and report.recorded == 200
    assert crowd.peak == limit  # the server never saw more than the limit at once...
    assert gauge.peak == limit == report.peak_in_flight  # ...and the client agrees
    # 25 full waves that each finish as soon as they fill; far below 200 sequential timeouts
    assert report.duration_s < (200 / limit) * settings.timeout_s / 2
    assert {w.status for w in store.list_workers()} == {WorkerStatus.ACTIVE}
    store.close()


def run_heartbeat(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "DATABASE_URL",
                          "GITHUB_ACTIONS")}  # CI runs this suite under GitHub Actions
    return subprocess.run([sys.executable, "-m", "scripts.heartbeat"], cwd=REPO_ROOT,
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_script_table_summary_and_exit_codes(servers: dict[str, str], tmp_path: Path) -> None:
    reg = tmp_path / "registry.db"
    store = SqliteStore(reg)
    store.add_worker(servers["alive"], name="alive")
    store.add_worker(servers["failing"], name="failing")
    store.close()
    summary = tmp_path / "summary.md"
    done = run_heartbeat({"NADG_REGISTRY": str(reg), "GITHUB_STEP_SUMMARY": str(summary),
                          "NADG_HEARTBEAT_TIMEOUT_S": "2", "NADG_HEARTBEAT_RETRY_DELAY_S": "0"})
    assert done.returncode == 0, done.stderr
    assert "1/2 workers answered; 2 outcomes recorded" in done.stdout
    assert "HTTP 500" in done.stdout
    text = summary.read_text()
    assert text.startswith("### NEXUS Grid heartbeat")
    assert "| id | worker | result |" in text and "| FAIL |" in text and "| ok |" in text

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    down = run_heartbeat({"NADG_REGISTRY": str(blocker / "r.db"),
                          "GITHUB_STEP_SUMMARY": str(summary)})
    assert down.returncode == 3  # ExitCode.UNAVAILABLE
    assert "registry unavailable" in down.stderr and "NADG_REGISTRY" in down.stderr
    assert "Registry unavailable" in summary.read_text()


@pytest.mark.parametrize("command", [["-m", "scripts.heartbeat"],
                                     ["-m", "nexus_ops.heartbeat"]])
def test_under_github_actions_a_local_sqlite_registry_is_refused(
        tmp_path: Path, command: list[str]) -> None:
    # the runner's disk is thrown away: the cron would ping an empty registry and stay green
    reg = tmp_path / "registry.db"
    summary = tmp_path / "summary.md"
    clean = {k: v for k, v in os.environ.items()
             if k not in ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "DATABASE_URL")}
    done = subprocess.run([sys.executable, *command], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60,
                          env={**clean, "GITHUB_ACTIONS": "true", "NADG_REGISTRY": str(reg),
                               "GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 3, (done.stdout, done.stderr)  # ExitCode.UNAVAILABLE
    assert "GitHub Actions" in done.stderr and "SQLite" in done.stderr
    assert "SUPABASE_SERVICE_KEY" in done.stderr and "DATABASE_URL" in done.stderr
    assert not reg.exists()  # refused before anything was opened or written
    assert "Not run: refusing to run under GitHub Actions" in summary.read_text()


def test_outside_github_actions_the_same_registry_runs(tmp_path: Path) -> None:
    reg = tmp_path / "registry.db"
    SqliteStore(reg).close()
    done = run_heartbeat({"GITHUB_ACTIONS": "false", "NADG_REGISTRY": str(reg)})
    assert done.returncode == 0, done.stderr
    assert "0/0 workers answered" in done.stdout


def test_heartbeat_imports_stay_light() -> None:
    """The cron installs only requirements-heartbeat.txt: nothing heavy may be imported."""
    code = ("import sys, scripts.heartbeat, database.manage_workers, database.backends.postgres,"
            " database.backends.supabase, database.backends.sqlite;"
            " print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert {"httpx", "psycopg", "supabase", "pydantic_settings"} <= loaded
    heavy = {"torch", "transformers", "numpy", "fastapi", "streamlit", "worker_node",
             "master_app", "google"}
    assert not heavy & loaded
