"""The heartbeat has a deadline whatever the workers do: 1,000 workers, 250 of them silent."""

from __future__ import annotations

import time
from pathlib import Path

from database.backends.sqlite import SqliteStore
from database.models import WorkerStatus
from nexus_ops.health import HeartbeatSettings, ping_workers
from tests.ops.loopback import SilentServer, StandIns


async def test_thousand_workers_with_250_silent_finish_under_a_minute(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "registry.db")
    with StandIns() as servers:  # in a child process, as real workers would be
        alive = servers.alive
        for i in range(700):
            store.add_worker(f"{alive}/w/{i}")
        for i in range(50):  # original NADG workers answer {"status": "healthy"}
            store.add_worker(f"{alive}/orig/{i}", status=WorkerStatus.OFFLINE)
        for i in range(250):
            store.add_worker(f"{servers.silent}/s/{i}")
        started = time.monotonic()
        report = await ping_workers(store, settings=HeartbeatSettings())  # the defaults
        took = time.monotonic() - started
        accepted = servers.silent_accepted()
    assert took < 60, f"the heartbeat took {took:.1f}s"
    assert report.recorded == 1000 and report.alive == 750
    assert accepted >= 250  # every silent worker was really connected to, and held
    silent_outcomes = [o for o in report.outcomes if "/s/" in o.worker.vm_url]
    assert all(not o.probe.ok and "timed out" in (o.probe.error or "")
               for o in silent_outcomes)
    originals = [o for o in report.outcomes if "/orig/" in o.worker.vm_url]
    assert all(o.probe.ok and o.status_after is WorkerStatus.ACTIVE for o in originals)
    store.close()


async def test_the_deadline_cuts_every_ping_off(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "registry.db")
    settings = HeartbeatSettings(timeout_s=30, concurrency=100, retries=1, deadline_s=2)
    with SilentServer() as silent:
        for i in range(300):
            store.add_worker(f"{silent.url}/s/{i}")
        report = await ping_workers(store, settings=settings)
    assert report.duration_s < 6, report.duration_s  # not 30 s, let alone 300 × 30 s
    started = [o for o in report.outcomes if o.probe.attempts > 0]
    unstarted = [o for o in report.outcomes if o.probe.attempts == 0]
    assert len(started) == 100 and len(unstarted) == 200
    # a ping cut off is a failed ping, recorded; a worker never pinged is not judged
    assert all(o.record_error is None and "deadline" in (o.probe.error or "")
               for o in started)
    assert all(o.record_error and "not pinged" in o.record_error for o in unstarted)
    assert report.recorded == 100
    failures = sorted(w.consecutive_failures for w in store.list_workers())
    assert failures == [0] * 200 + [1] * 100
    store.close()
