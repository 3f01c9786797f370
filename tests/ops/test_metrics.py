"""The master's Prometheus metrics, scraped over HTTP after (and while) real jobs run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from streamlit.testing.v1 import AppTest

from database.backends.sqlite import SqliteStore
from master_app.dispatch import EventKind, ProgressEvent
from master_app.metrics import observe_event
from master_app.service import GridService
from master_app.settings import MasterSettings
from master_app.ui.metrics_view import metrics_rows
from scripts.grid import running_grid
from tests.support.servers import REPO_ROOT, free_port
from tests.support.waiting import wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample of the endpoint: (name, sorted labels) -> value."""
    text = httpx.get(url, timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str,
          **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_counters_gauges_and_histograms_after_a_run(tmp_path: Path) -> None:
    with running_grid(2, registry=tmp_path / "registry.db", metrics_port=0,
                      watchdog=False) as handle:
        assert handle.metrics_url and handle.grid is not None
        before = scrape(handle.metrics_url)
        settings = MasterSettings(auth_token=handle.token)
        service = GridService(handle.grid.store, settings)
        planned = service.plan("noop 12 sleep 20", None, planner="local")
        task_id = service.submit(planned.command, planned.plan, None)
        outcome = await service.run(task_id)
        assert outcome.ok
        after = scrape(handle.metrics_url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("nadg_master_subtasks_total", outcome="completed") == 12
    assert delta("nadg_master_attempts_total") >= 12
    assert delta("nadg_master_subtask_seconds_count") == 12
    assert delta("nadg_master_store_write_seconds_count", op="completed") == 12
    assert delta("nadg_master_store_write_seconds_count", op="attempt") >= 12
    assert value(after, "nadg_store_up") == 1
    assert value(after, "nadg_tasks", status="completed") >= 1
    assert value(after, "nadg_tasks", status="running") == 0
    assert value(after, "nadg_workers", status="active") == 2
    assert sum(v for (n, _), v in after.items() if n == "nadg_worker_up") == 2
    assert value(after, "nadg_oldest_queued_subtask_seconds") == 0


def test_headless_master_serves_metrics_while_it_runs(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("NADG_AUTH_TOKEN", "DATABASE_URL")}
    env["NADG_REGISTRY"] = str(tmp_path / "unused.db")
    proc = subprocess.Popen(
        [sys.executable, "-m", "master_app", "run", "noop 40 sleep 250", "--local", "1",
         "--no-progress", "--metrics-port", str(port)], cwd=REPO_ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        # while the job runs: subtasks complete, the store shows one task running
        def progressed() -> Samples | None:
            samples = scrape(url)
            done = value(samples, "nadg_master_subtasks_total", outcome="completed")
            return samples if done >= 4 else None

        samples = wait_until(progressed, timeout=60, interval=0.2,
                             what="completed subtasks on the metrics endpoint")
        assert samples is not None
        assert value(samples, "nadg_tasks", status="running") == 1
        assert value(samples, "nadg_workers", status="active") == 1
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_bad_metrics_port_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["NADG_REGISTRY"] = str(tmp_path / "registry.db")
    env["NADG_METRICS_PORT"] = "not-a-port"
    done = subprocess.run([sys.executable, "-m", "master_app", "run", "noop 1"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "NADG_METRICS_PORT='not-a-port' is not a port number" in done.stderr


def test_the_workers_page_expander_shows_the_counters(tmp_path: Path) -> None:
    def row(rows: list[dict[str, object]], what: str) -> object:
        return next(r["value"] for r in rows if r["metric"] == what)

    store = SqliteStore(tmp_path / "registry.db")
    store.add_worker("http://127.0.0.1:9/a")
    before = metrics_rows(store)
    observe_event(ProgressEvent(kind=EventKind.RETRIED, subtask_id="s", idx=0))
    after = metrics_rows(store)
    assert row(after, "retries") == row(before, "retries") + 1  # type: ignore[operator]
    assert row(after, "workers active") == 1
    store.close()

    def page() -> None:
        from master_app.ui.metrics_view import metrics_expander

        metrics_expander()

    app = AppTest.from_function(page).run(timeout=30)
    assert not app.exception
    assert app.expander[0].label == "Master metrics (Prometheus)"
    assert len(app.dataframe) == 1
