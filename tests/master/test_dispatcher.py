"""The dispatcher against fake workers on loopback: retries, breakers, hedging, deadlines."""

from __future__ import annotations

import asyncio
import time

from database.backends.sqlite import SqliteStore
from database.models import CircuitState
from master_app.dispatch import Dispatcher, EventKind, ProgressEvent
from nexus_common.protocol import Subtask
from tests.master.conftest import fast_settings
from tests.master.fakes import FakeWorker, NullSink, fake_workers, node


def noops(n: int, sleep_ms: float = 0.0, task: str = "t") -> list[Subtask]:
    return [Subtask(id=f"{task}:{i}", task_id=task, kind="noop",
                    payload={"sleep_ms": sleep_ms, "echo": i}, timeout_s=30)
            for i in range(n)]


async def test_every_subtask_once_in_order_with_events() -> None:
    a, b = FakeWorker("a", delay_s=0.01), FakeWorker("b", delay_s=0.01)
    events: list[ProgressEvent] = []
    with fake_workers(a, b) as urls:
        async with Dispatcher(fast_settings()) as d:
            report = await d.run_subtasks(noops(30), [node(u) for u in urls],
                                          on_event=events.append)
    assert report.ok and len(report.results) == 30
    assert [report.results[f"t:{i}"].output["echo"] for i in range(30)] == list(range(30))
    assert a.calls and b.calls, "both workers got work"
    completed = [e for e in events if e.kind is EventKind.COMPLETED]
    assert sorted(e.idx for e in completed) == list(range(30))
    assert events[-1].done == 30 and events[-1].total == 30
    assert all(e.worker_url in urls for e in events)


async def test_failed_worker_work_goes_elsewhere_and_circuit_is_mirrored(
        store: SqliteStore) -> None:
    bad, good = FakeWorker("bad", mode="http500"), FakeWorker("good", delay_s=0.01)
    with fake_workers(bad, good) as urls:
        w_bad = store.add_worker(urls[0], max_concurrency=2)
        w_good = store.add_worker(urls[1], max_concurrency=2)
        async with Dispatcher(fast_settings(NADG_CIRCUIT_COOLDOWN_S=60), registry=store) as d:
            report = await d.run_subtasks(noops(20), [w_bad, w_good])
            assert d.breakers[w_bad.id].state is CircuitState.OPEN
    assert report.ok and len(report.results) == 20
    assert set(report.winners.values()) == {w_good.id}
    assert len(bad.calls) <= 3, "the breaker stopped traffic to the failing worker"
    assert store.get_worker(w_bad.id).circuit_state is CircuitState.OPEN
    assert store.get_worker(w_good.id).total_tasks >= 20


async def test_subtask_failure_is_data_not_retried() -> None:
    w = FakeWorker("f", mode="fail")
    with fake_workers(w) as urls:
        async with Dispatcher(fast_settings()) as d:
            report = await d.run_subtasks(noops(3), [node(urls[0])])
    assert not report.ok
    assert sorted(f.idx for f in report.failures.values()) == [0, 1, 2]
    assert all("it broke" in f.reason for f in report.failures.values())
    assert len(w.calls) == 3


async def test_hedging_beats_a_hanging_worker() -> None:
    hang, fast = FakeWorker("hang", mode="hang", capacity=1), FakeWorker("fast", delay_s=0.02)
    with fake_workers(hang, fast) as urls:
        workers = [node(urls[0], capacity=1), node(urls[1], capacity=2)]
        async with Dispatcher(fast_settings()) as d:
            start = time.monotonic()
            report = await d.run_subtasks(noops(12), workers)
            elapsed = time.monotonic() - start
    assert report.ok, report.failures
    assert report.hedges >= 1
    assert hang.calls, "the hanging worker did get work"
    assert elapsed < 5, f"hedging should finish long before the 30 s timeout, took {elapsed}"


async def test_all_workers_down_fails_with_reason_and_does_not_hang() -> None:
    a, b = FakeWorker("a", mode="http500"), FakeWorker("b", mode="http500")
    with fake_workers(a, b) as urls:
        async with Dispatcher(fast_settings(NADG_CIRCUIT_COOLDOWN_S=60)) as d:
            start = time.monotonic()
            report = await d.run_subtasks(noops(10), [node(u) for u in urls])
    assert len(report.failures) == 10 and not report.results
    reasons = {f.reason for f in report.failures.values()}
    assert any("no worker could run it" in r or "HTTP 500" in r for r in reasons)
    assert time.monotonic() - start < 10


async def test_unreachable_workers_and_no_workers() -> None:
    async with Dispatcher(fast_settings()) as d:
        empty = await d.run_subtasks(noops(2), [])
        dead = await d.run_subtasks(noops(2), [node("http://127.0.0.1:9")])
    assert {f.reason for f in empty.failures.values()} == {
        "no live workers: register or start a worker first"}
    assert len(dead.failures) == 2


async def test_deadline_and_cancel() -> None:
    slow = FakeWorker("slow", delay_s=0.0)
    with fake_workers(slow) as urls:
        async with Dispatcher(fast_settings(NADG_HEDGING=False)) as d:
            report = await d.run_subtasks(noops(4, sleep_ms=5000), [node(urls[0])],
                                          deadline_s=0.5)
            assert report.deadline_passed and len(report.failures) == 4
            assert "deadline" in next(iter(report.failures.values())).reason
            cancel = asyncio.Event()
            events: list[ProgressEvent] = []

            def on_event(e: ProgressEvent) -> None:
                events.append(e)
                if e.kind is EventKind.DISPATCHED:
                    cancel.set()

            report = await d.run_subtasks(noops(3, sleep_ms=5000), [node(urls[0])],
                                          cancel=cancel, on_event=on_event)
    assert report.cancelled
    assert all(f.cancelled for f in report.failures.values())
    assert any(e.kind is EventKind.CANCELLED for e in events)


async def test_busy_worker_is_retried_without_tripping_the_breaker() -> None:
    busy, ok = FakeWorker("busy", mode="busy"), FakeWorker("ok")
    with fake_workers(busy, ok) as urls:
        workers = [node(urls[0]), node(urls[1])]
        async with Dispatcher(fast_settings()) as d:
            report = await d.run_subtasks(noops(6), workers)
            assert d.breakers[workers[0].id].state is CircuitState.CLOSED
    assert report.ok


async def test_batches_when_queue_is_long() -> None:
    w = FakeWorker("w", capacity=8)
    with fake_workers(w) as urls:
        async with Dispatcher(fast_settings()) as d:
            report = await d.run_subtasks(noops(100), [node(urls[0], capacity=8)])
    assert report.ok and len(report.results) == 100
    assert w.batches >= 1
    assert len(w.calls) == 100


async def test_a_result_being_recorded_is_not_cut_short_by_a_cancel() -> None:
    """Batch [0, 1] returns; while 0 is being recorded the task is cancelled. The record of
    0 must finish (the batch task is not cancelled mid-handling) and 1 ends cancelled."""
    cancel = asyncio.Event()
    one_failed = asyncio.Event()
    recorded: list[str] = []

    class SlowSink:
        async def attempt(self, subtask: Subtask, worker: object) -> None:
            return None

        async def completed(self, subtask: Subtask, result: object, worker: object) -> None:
            if subtask.id == "t:0":
                cancel.set()  # the user cancels while this result is being written
                await one_failed.wait()
            recorded.append(subtask.id)

        async def failed(self, subtask: Subtask, failure: object) -> None:
            if subtask.id == "t:1":
                one_failed.set()

    w = FakeWorker("w", capacity=2)
    with fake_workers(w) as urls:
        async with Dispatcher(fast_settings(NADG_HEDGING=False)) as d:
            async with asyncio.timeout(20):
                report = await d.run_subtasks(noops(4), [node(urls[0], capacity=2)],
                                              sink=SlowSink(), cancel=cancel)
    assert w.batches >= 1, "0 and 1 went out as one batch"
    assert report.cancelled
    assert "t:0" in report.results and "t:0" in recorded, \
        "a result the report counts was also recorded by the sink"
    assert set(report.results) == set(recorded)
    assert report.failures["t:1"].cancelled


async def test_events_count_only_outcomes_already_announced() -> None:
    """The sink holds subtask 0's record while another worker finishes more: no event may
    count 0 as done before its own COMPLETED event (a page said "60 of 60 done" while its
    per-worker table still showed results being written)."""
    held, release = asyncio.Event(), asyncio.Event()
    events: list[ProgressEvent] = []

    class HeldSink(NullSink):
        async def completed(self, subtask: Subtask, result: object, worker: object) -> None:
            if subtask.id == "t:0":
                held.set()
                await release.wait()

    def on_event(event: ProgressEvent) -> None:
        events.append(event)
        if held.is_set() and event.kind is EventKind.COMPLETED:
            release.set()  # another outcome was announced while 0 was being written

    a, b = FakeWorker("a", capacity=2), FakeWorker("b", capacity=2)
    with fake_workers(a, b) as urls:
        async with Dispatcher(fast_settings(NADG_HEDGING=False)) as d:
            async with asyncio.timeout(20):
                report = await d.run_subtasks(
                    noops(10), [node(u, capacity=2) for u in urls], sink=HeldSink(),
                    on_event=on_event)
    assert report.ok and release.is_set()
    announced = 0
    for event in events:
        announced += event.kind is EventKind.COMPLETED
        assert event.done == announced, (event, announced)
    assert events[-1].done == 10


async def test_a_result_the_sink_could_not_write_is_still_announced() -> None:
    """The store refuses one result: the report keeps it (the job runner writes it before
    the task ends), so the page's count and lanes must still show it done."""
    class FlakySink(NullSink):
        async def completed(self, subtask: Subtask, result: object, worker: object) -> None:
            if subtask.id == "t:3":
                raise ConnectionError("the store went away for a moment")

    events: list[ProgressEvent] = []
    w = FakeWorker("w", capacity=2)
    with fake_workers(w) as urls:
        async with Dispatcher(fast_settings(NADG_HEDGING=False)) as d:
            report = await d.run_subtasks(noops(6), [node(urls[0], capacity=2)],
                                          sink=FlakySink(), on_event=events.append)
    assert report.ok and "t:3" in report.results
    completed = sorted(e.idx for e in events if e.kind is EventKind.COMPLETED)
    assert completed == list(range(6))
    assert events[-1].done == 6


async def test_pipeline_keeps_more_than_the_slots_on_a_worker_and_no_more_than_asked() -> None:
    """NADG_PIPELINE=3: a worker of 2 slots holds up to 6 subtasks (the rest of each batch
    waits in its queue); 1 keeps it to its 2 slots; the default is 4 a slot."""
    for pipeline, window in ((1, 2), (3, 6), (None, 8)):
        w = FakeWorker(f"p{pipeline}", capacity=2, delay_s=0.002)
        events: list[ProgressEvent] = []
        depth = {} if pipeline is None else {"NADG_PIPELINE": pipeline}
        with fake_workers(w) as urls:
            async with Dispatcher(fast_settings(NADG_HEDGING=False, **depth)) as d:
                report = await d.run_subtasks(noops(60), [node(urls[0], capacity=2)],
                                              on_event=events.append)
        assert report.ok and len(report.results) == 60 and report.attempts == 60
        most = max(e.in_flight for e in events)
        assert most == window, (pipeline, most)


async def test_long_subtasks_are_not_pipelined() -> None:
    """A worker starts a subtask's clock when it queues it: subtasks longer than
    pipeline.ITEM_MAX_S never wait in its queue, whatever NADG_PIPELINE says."""
    w = FakeWorker("slow", capacity=2, delay_s=0.15)
    events: list[ProgressEvent] = []
    with fake_workers(w) as urls:
        async with Dispatcher(fast_settings(NADG_HEDGING=False, NADG_PIPELINE=4)) as d:
            report = await d.run_subtasks(noops(8), [node(urls[0], capacity=2)],
                                          on_event=events.append)
    assert report.ok and len(report.results) == 8
    assert max(e.in_flight for e in events) == 2


async def test_a_pipeline_deeper_than_the_worker_queue_falls_back_to_its_slots() -> None:
    """NADG_PIPELINE=4 to a worker of 2 slots and a queue of 1: once the run overfills it
    (busy while it runs our subtasks), the lane keeps to its slots; the run ends whole and
    the worker is never taken for down."""
    w = FakeWorker("q", capacity=2, delay_s=0.002, queue=1)
    with fake_workers(w) as urls:  # batches of 2: the window goes out as 4 requests
        async with Dispatcher(fast_settings(NADG_HEDGING=False, NADG_PIPELINE=4,
                                            NADG_BATCH_MAX=2)) as d:
            report = await d.run_subtasks(noops(80), [node(urls[0], capacity=2)])
    assert report.ok and len(report.results) == 80
    assert 1 <= w.rejected <= 3, w.rejected  # overfilled once, then kept to its slots


async def test_workers_answering_only_busy_end_the_run_with_the_reason() -> None:
    """503 is backpressure, not a failure, so breakers stay closed; a grid that answers
    nothing but 503 must still end (all-down) instead of retrying for ever."""
    a, b = FakeWorker("a", mode="busy"), FakeWorker("b", mode="busy")
    with fake_workers(a, b) as urls:
        async with Dispatcher(fast_settings()) as d:
            async with asyncio.timeout(15):
                report = await d.run_subtasks(noops(5), [node(u) for u in urls])
    assert not report.results and len(report.failures) == 5
    reasons = {f.reason for f in report.failures.values()}
    assert all("no worker could run it" in r and "busy (503)" in r for r in reasons), reasons
    assert a.calls and b.calls
