"""BackgroundRun / Lanes: the job runs in its own thread and loop; the page only reads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from master_app.events import EventKind, ProgressEvent
from master_app.ui.run_state import BackgroundRun, Lanes, RunRegistry
from tests.support.waiting import wait_until


def _event(kind: EventKind, idx: int, url: str | None, done: int = 0, failed: int = 0,
           total: int = 3) -> ProgressEvent:
    return ProgressEvent(kind=kind, subtask_id=f"t:{idx}", idx=idx, worker_url=url,
                         done=done, failed=failed, total=total)


def test_lanes_follow_each_shard_on_each_worker() -> None:
    lanes = Lanes(total=3)
    lanes.apply(_event(EventKind.DISPATCHED, 0, "http://a"))
    lanes.apply(_event(EventKind.DISPATCHED, 1, "http://b"))
    lanes.apply(_event(EventKind.RETRIED, 1, "http://b"))
    lanes.apply(_event(EventKind.DISPATCHED, 1, "http://a"))
    lanes.apply(_event(EventKind.HEDGED, 2, "http://b"))
    lanes.apply(_event(EventKind.COMPLETED, 0, "http://a", done=1))
    rows = {r["worker"]: r for r in lanes.rows()}
    assert rows["http://a"]["done"] == "0"
    assert rows["http://a"]["running"] == "1"
    assert rows["http://b"]["retried"] == "1"
    assert rows["http://b"]["hedged"] == "2"
    assert lanes.done == 1 and lanes.failed == 0
    assert abs(lanes.fraction - 1 / 3) < 1e-9
    lanes.apply(_event(EventKind.FAILED, 2, "http://b", done=1, failed=1))
    assert lanes.failed == 1 and abs(lanes.fraction - 2 / 3) < 1e-9


def test_background_run_reports_progress_and_its_outcome() -> None:
    release = threading.Event()

    async def job(on_event: Callable[[ProgressEvent], None], cancel: asyncio.Event) -> str:
        assert threading.current_thread() is not threading.main_thread()
        on_event(_event(EventKind.DISPATCHED, 0, "http://a", total=2))
        on_event(_event(EventKind.COMPLETED, 0, "http://a", done=1, total=2))
        while not release.is_set():
            await asyncio.sleep(0.01)
        on_event(_event(EventKind.COMPLETED, 1, "http://a", done=2, total=2))
        return "finished"

    run = BackgroundRun("t1", 2, job).start()
    snap = wait_until(lambda: (s := run.snapshot()).done == 1 and s, what="first result")
    assert snap.running and snap.outcome is None and snap.fraction == 0.5
    release.set()
    snap = wait_until(lambda: not (s := run.snapshot()).running and s, what="run end")
    assert snap.outcome == "finished" and snap.error is None and snap.done == 2


def test_cancel_reaches_the_job_in_its_own_loop() -> None:
    async def job(on_event: Callable[[ProgressEvent], None], cancel: asyncio.Event) -> str:
        await cancel.wait()
        return "cancelled"

    run = BackgroundRun("t2", 1, job).start()
    assert run.snapshot().running
    run.cancel()
    assert run.snapshot().cancelling or not run.snapshot().running
    snap = wait_until(lambda: not (s := run.snapshot()).running and s, what="cancelled run")
    assert snap.outcome == "cancelled" and not snap.cancelling


def test_a_crashing_job_becomes_an_error_message() -> None:
    async def job(on_event: Callable[[ProgressEvent], None], cancel: asyncio.Event) -> str:
        raise RuntimeError("worker pool exploded")

    run = BackgroundRun("t3", 1, job).start()
    snap = wait_until(lambda: not (s := run.snapshot()).running and s, what="crash")
    assert snap.error == "RuntimeError: worker pool exploded" and snap.outcome is None


def test_registry_keeps_one_run_per_task() -> None:
    gate = threading.Event()

    async def job(on_event: Callable[[ProgressEvent], None], cancel: asyncio.Event) -> int:
        while not gate.is_set():
            await asyncio.sleep(0.01)
        return 1

    runs = RunRegistry()
    first = runs.start("t4", 1, job)
    assert runs.start("t4", 1, job) is first
    assert runs.active() == ["t4"]
    gate.set()
    wait_until(lambda: not first.running, what="run end")
    assert runs.active() == [] and runs.get("t4") is first


def test_a_copy_left_running_after_the_shard_completed_elsewhere_is_superseded() -> None:
    lanes = Lanes(total=1)
    lanes.apply(_event(EventKind.DISPATCHED, 0, "http://slow", total=1))
    lanes.apply(_event(EventKind.HEDGED, 0, "http://fast", total=1))
    lanes.apply(_event(EventKind.COMPLETED, 0, "http://fast", done=1, total=1))
    rows = {r["worker"]: r for r in lanes.rows()}
    assert rows["http://slow"]["superseded"] == "0" and rows["http://slow"]["running"] == ""
    assert rows["http://fast"]["done"] == "0"
