"""A worker that comes back: refused connections cost no attempt, and an open breaker is
probed as soon as the worker's /health answers again (not at the end of its cooldown)."""

from __future__ import annotations

import asyncio
import threading

from master_app.dispatch import Dispatcher, EventKind, ProgressEvent
from tests.master.conftest import fast_settings
from tests.master.fakes import FakeWorker, node
from tests.master.test_dispatcher import noops
from tests.support.servers import free_port, serve_app
from tests.support.waiting import wait_until


async def test_a_restarted_worker_gets_the_work_without_losing_attempts() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"  # nothing listens there yet: connections are refused
    events: list[ProgressEvent] = []
    refused = threading.Event()

    def on_event(event: ProgressEvent) -> None:
        events.append(event)
        if sum(e.kind is EventKind.RETRIED for e in events) >= 3:
            refused.set()

    worker = FakeWorker("back", delay_s=0.0)
    # Two attempts only, a breaker that opens after 3 failures and would stay open for a
    # minute, and no all-down give-up within the test: only the /health check and the
    # refund of refused attempts can finish this run.
    settings = fast_settings(NADG_MAX_ATTEMPTS=2, NADG_CIRCUIT_FAILURES=3,
                             NADG_CIRCUIT_COOLDOWN_S=60, NADG_ALL_DOWN_GRACE_S=120)
    async with Dispatcher(settings) as d:
        run = asyncio.create_task(d.run_subtasks(noops(1), [node(url, capacity=1)],
                                                 on_event=on_event))
        await asyncio.to_thread(wait_until, refused.is_set, timeout=20,
                                what="three refused dispatches")
        assert not run.done(), "refused connections must not use up the two attempts"
        with serve_app(worker.app(), port=port):
            report = await asyncio.wait_for(run, timeout=20)
        worker.stopped.set()
    assert report.ok, report.failures
    assert [r.output["echo"] for r in report.results.values()] == [0]
    assert worker.calls == ["t:0"]
    assert d.breakers[next(iter(d.breakers))].state.value == "closed"
