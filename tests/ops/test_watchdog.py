"""The local grid's watchdog: a killed worker serves again within 10 s; a crash loop backs off."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from database.backends.sqlite import SqliteStore
from database.models import WorkerStatus
from master_app.local_grid import LocalGrid
from master_app.worker_watchdog import Watchdog
from tests.support.waiting import wait_until

TOKEN = "watchdog-test-token-" + "x" * 24


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_killed_worker_is_restarted_and_a_crash_loop_backs_off(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "registry.db")
    started = time.monotonic()
    with LocalGrid(1, store, TOKEN) as grid, Watchdog(grid, stable_s=10.0,
                                                      base_backoff_s=0.5) as dog:
        cold_start_s = time.monotonic() - started
        first = grid.workers[0]
        node_id = first.node.id if first.node else -1
        store.set_worker_status(node_id, WorkerStatus.OFFLINE)  # as a master would
        killed_at = time.monotonic()
        os.killpg(first.proc.pid, signal.SIGKILL)
        wait_until(lambda: dog.restarts, timeout=60, what="the worker to serve again")
        restart_s = time.monotonic() - killed_at
        # The watchdog adds at most a poll or two to a worker's own start-up time: within
        # 10 s on a machine where a worker starts in 7 s (2-3 s on an idle one).
        assert restart_s < cold_start_s + 3, (restart_s, cold_start_s)
        if cold_start_s < 7:
            assert restart_s < 10, (restart_s, cold_start_s)
        second = grid.workers[0]
        assert second.proc.pid != first.proc.pid and second.url == first.url
        assert _answers(second.url)
        assert store.get_worker(node_id).status is WorkerStatus.ACTIVE
        assert dog.deaths == [(0, 0.0)]  # first death: restarted at once

        # Now it crash-loops: a secret under 32 bytes makes every start fail.
        grid.env["NADG_AUTH_TOKEN"] = "short"
        os.killpg(second.proc.pid, signal.SIGKILL)
        wait_until(lambda: len(dog.deaths) >= 4, timeout=40, what="three quick deaths")
        delays = [delay for _, delay in dog.deaths[1:4]]
        assert delays == [0.5, 1.0, 2.0], dog.deaths  # doubling, not a tight loop

        # Fixed: it comes back by itself and counts as a restart.
        grid.env["NADG_AUTH_TOKEN"] = TOKEN
        wait_until(lambda: len(dog.restarts) >= 2, timeout=30, what="recovery after the loop")
        assert _answers(grid.workers[0].url)
    store.close()
