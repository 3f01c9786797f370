"""BackgroundRun / Lanes: the job runs in its own thread and loop; the page only reads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from master_app.dispatch import EventKind, ProgressEvent
from master_app.ui.run_state import STATES, BackgroundRun, Lanes, RunRegistry
from tests.support.waiting import wait_until


def _event(kind: EventKind, idx: int, url: str | None, done: int = 0, failed: int = 0,
           total: int = 3) -> ProgressEvent:
    return ProgressEvent(kind=kind, subtask_id=f"t:{idx}", idx=idx, worker_url=url,
                         done=done, failed=failed, total=total)


def test_lanes_follow_each_subtask_and_count_per_worker() -> None:
    lanes = Lanes(total=3)
    lanes.apply(_event(EventKind.DISPATCHED, 0, "http://a"), now=0.0)
    lanes.apply(_event(EventKind.DISPATCHED, 1, "http://b"), now=0.0)
    lanes.apply(_event(EventKind.RETRIED, 1, "http://b"), now=0.5)
    lanes.apply(_event(EventKind.DISPATCHED, 1, "http://a"), now=0.6)
    lanes.apply(_event(EventKind.HEDGED, 2, "http://b"), now=0.7)
    lanes.apply(_event(EventKind.COMPLETED, 0, "http://a", done=1), now=2.0)
    rows = {r["worker"]: r for r in lanes.rows(now=2.0)}
    assert rows["http://a"] == {"worker": "http://a", "running": 1, "done": 1, "failed": 0,
                                "per second": 0.5}
    assert rows["http://b"]["running"] == 1 and rows["http://b"]["done"] == 0
    assert [STATES[c] for c in lanes.codes] == ["done", "running", "running"]
    assert lanes.done == 1 and lanes.failed == 0
    assert abs(lanes.fraction - 1 / 3) < 1e-9
    assert lanes.eta_s(2.0) == 4.0  # 1 finished in 2 s: 2 more take 4 s
    lanes.apply(_event(EventKind.FAILED, 2, "http://b", done=1, failed=1), now=2.5)
    assert lanes.failed == 1 and abs(lanes.fraction - 2 / 3) < 1e-9
    assert {r["worker"]: r["running"] for r in lanes.rows(now=3.0)} == {
        "http://a": 1, "http://b": 0}


def test_cancelled_subtasks_are_counted_apart_and_lanes_end() -> None:
    lanes = Lanes(total=4)
    for idx, url in enumerate(["http://a", "http://b", "http://a", "http://b"]):
        lanes.apply(_event(EventKind.DISPATCHED, idx, url, total=4))
    lanes.apply(_event(EventKind.COMPLETED, 0, "http://a", done=1, total=4))
    lanes.apply(_event(EventKind.FAILED, 1, "http://b", done=1, failed=1, total=4))
    # The dispatcher cancels the rest with no worker attached to the event.
    lanes.apply(_event(EventKind.CANCELLED, 2, None, done=1, failed=2, total=4))
    lanes.apply(_event(EventKind.CANCELLED, 3, None, done=1, failed=3, total=4))
    assert (lanes.done, lanes.failed, lanes.cancelled) == (1, 1, 2)
    assert lanes.fraction == 1.0
    assert all(r["running"] == 0 for r in lanes.rows())  # no lane says running any more
    assert [STATES[c] for c in lanes.codes] == ["done", "failed", "cancelled", "cancelled"]


def test_the_end_of_a_cancelled_run_ends_every_lane() -> None:
    lanes = Lanes(total=2)
    lanes.apply(_event(EventKind.DISPATCHED, 0, "http://a", total=2))
    lanes.apply(_event(EventKind.RETRIED, 1, "http://a", total=2))
    lanes.end(cancelled=True)
    assert [STATES[c] for c in lanes.codes] == ["cancelled", "cancelled"]
    assert lanes.rows()[0]["running"] == 0 and lanes.cancelled == 2


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


def test_a_copy_left_running_after_the_subtask_completed_elsewhere_holds_nothing() -> None:
    lanes = Lanes(total=1)
    lanes.apply(_event(EventKind.DISPATCHED, 0, "http://slow", total=1))
    lanes.apply(_event(EventKind.HEDGED, 0, "http://fast", total=1))
    lanes.apply(_event(EventKind.COMPLETED, 0, "http://fast", done=1, total=1))
    # The slow copy's late news does not undo the result.
    lanes.apply(_event(EventKind.FAILED, 0, "http://slow", done=1, total=1))
    rows = {r["worker"]: r for r in lanes.rows()}
    assert rows["http://slow"]["running"] == 0 and rows["http://fast"]["done"] == 1
    assert STATES[lanes.codes[0]] == "done"


def test_a_snapshot_is_one_byte_per_subtask() -> None:
    release = threading.Event()

    async def job(on_event: Callable[[ProgressEvent], None], cancel: asyncio.Event) -> str:
        for idx in range(5000):
            on_event(_event(EventKind.DISPATCHED, idx, "http://a", total=5000))
        on_event(_event(EventKind.COMPLETED, 7, "http://a", done=1, total=5000))
        await asyncio.to_thread(release.wait, 10)
        return "ok"

    run = BackgroundRun("t5", 5000, job).start()
    snap = wait_until(lambda: (s := run.snapshot()).done == 1 and s, what="events folded")
    assert len(snap.codes) == 5000 and snap.codes[7] == STATES.index("done")
    assert snap.lane_rows == [{"worker": "http://a", "running": 4999, "done": 1,
                               "failed": 0, "per second": snap.lane_rows[0]["per second"]}]
    release.set()
    wait_until(lambda: not run.running, what="run end")
