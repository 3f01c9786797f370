"""Large tasks stream from the store in windows: the runner never reads a large task
whole, progress counts over the whole task, a resumed one sends only what has no result,
and cancelling ends the rest in one statement (a small window stands in for 2,000)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from database.backends.sqlite import SqliteStore
from database.models import SubtaskRecord, SubtaskStatus, TaskDetail, TaskStatus
from master_app.dispatch import EventKind, ProgressEvent
from master_app.planning import LocalPlanner
from master_app.service import JobRunner
from tests.master.conftest import fast_settings
from tests.master.fakes import FakeWorker, fake_workers
from tests.support.waiting import async_wait_until

WINDOW = 10


class WindowStore(SqliteStore):
    """A real store that records how the runner reads subtasks."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.whole_reads = 0
        self.windows: list[int] = []

    def get_task(self, task_id: str) -> TaskDetail:
        self.whole_reads += 1
        return super().get_task(task_id)

    def subtask_window(self, task_id: str, *, after_idx: int = -1, limit: int = 1000,
                       statuses: Iterable[SubtaskStatus] | None = None
                       ) -> list[SubtaskRecord]:
        found = super().subtask_window(task_id, after_idx=after_idx, limit=limit,
                                       statuses=statuses)
        self.windows.append(len(found))
        return found


async def test_a_large_task_runs_window_by_window(tmp_path: Path) -> None:
    store = WindowStore(tmp_path / "r.db")
    w = FakeWorker("a", capacity=4)
    events: list[ProgressEvent] = []
    try:
        with fake_workers(w) as urls:
            store.add_worker(urls[0], max_concurrency=4)
            async with JobRunner(store, fast_settings(NADG_HEDGING=False)) as runner:
                runner.window = WINDOW
                task_id = runner.submit("noop 45", LocalPlanner().plan("noop 45", None, []),
                                        None)
                outcome = await runner.run(task_id, on_event=events.append)
        assert outcome.ok and outcome.completed == 45 and outcome.total == 45
        assert outcome.detail is None, "a windowed run hands on no whole detail"
        assert store.whole_reads == 0, "the task was never read whole"
        assert max(store.windows) <= WINDOW and sum(store.windows) == 45
        done = [e.done for e in events if e.kind is EventKind.COMPLETED]
        assert done == sorted(done) and done[-1] == 45, "progress counts the whole task"
        assert {e.total for e in events} == {45}
        assert sorted(w.calls) == sorted(f"{task_id}:{i}" for i in range(45))
        detail = SqliteStore.get_task(store, task_id)
        assert detail.task.status is TaskStatus.COMPLETED
        assert detail.count(SubtaskStatus.COMPLETED) == 45
        assert detail.task.result_summary is not None
        assert detail.task.result_summary["windowed"] == WINDOW
    finally:
        store.close()


async def test_a_resumed_large_task_sends_only_what_has_no_result(tmp_path: Path) -> None:
    store = WindowStore(tmp_path / "r.db")
    w = FakeWorker("a", capacity=4)
    try:
        with fake_workers(w) as urls:
            store.add_worker(urls[0], max_concurrency=4)
            async with JobRunner(store, fast_settings(NADG_HEDGING=False)) as runner:
                runner.window = WINDOW
                task_id = runner.submit("noop 30", LocalPlanner().plan("noop 30", None, []),
                                        None)
                for i in range(0, 30, 2):  # a master that died had finished the even ones
                    store.record_result(f"{task_id}:{i}", SubtaskStatus.COMPLETED,
                                        result={"id": f"{task_id}:{i}", "kept": True})
                for i in (1, 3):
                    store.record_attempt(f"{task_id}:{i}", None)  # in flight when it died
                outcome = await runner.run(task_id)
        assert outcome.ok and outcome.completed == 30
        assert sorted(w.calls) == sorted(f"{task_id}:{i}" for i in range(1, 30, 2))
        detail = SqliteStore.get_task(store, task_id)
        assert all(s.result == {"id": s.id, "kept": True} for s in detail.subtasks[::2]), \
            "results from before the restart are kept, not re-run"
    finally:
        store.close()


async def test_cancelling_a_large_task_is_one_statement_for_the_rest(tmp_path: Path) -> None:
    store = WindowStore(tmp_path / "r.db")
    w = FakeWorker("slow", delay_s=0.05, capacity=2)
    per_row_cancels = 0
    original = store.write_batch

    def counting(attempts, outcomes):  # type: ignore[no-untyped-def]
        nonlocal per_row_cancels
        per_row_cancels += sum(o.status is SubtaskStatus.CANCELLED for o in outcomes)
        return original(attempts, outcomes)

    store.write_batch = counting  # type: ignore[method-assign]
    try:
        with fake_workers(w) as urls:
            store.add_worker(urls[0], max_concurrency=2)
            async with JobRunner(store, fast_settings(NADG_HEDGING=False)) as runner:
                runner.window = WINDOW
                task_id = runner.submit("noop 500",
                                        LocalPlanner().plan("noop 500", None, []), None)
                cancel = asyncio.Event()
                run = asyncio.ensure_future(runner.run(task_id, cancel=cancel))

                async def started() -> bool:
                    return len(w.calls) >= 12  # into the second window

                await async_wait_until(started, timeout=30)
                cancel.set()
                outcome = await asyncio.wait_for(run, 30)
        assert outcome.status is TaskStatus.CANCELLED
        assert per_row_cancels == 0, "no cancellation was written row by row"
        assert len(store.windows) <= 4, "cancelling stopped reading windows"
        counts = store.subtask_counts(task_id)
        assert sum(counts.values()) == 500
        assert counts.get(SubtaskStatus.CANCELLED, 0) >= 500 - 2 * WINDOW
        assert counts.get(SubtaskStatus.CANCELLED, 0) + counts.get(
            SubtaskStatus.COMPLETED, 0) == 500
    finally:
        store.close()
