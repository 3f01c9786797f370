"""Watching is cheap: GridService.progress reads counts (never a task's rows) at a bounded
rate, from another thread while the run goes on, and cancelling a task nothing here runs
is one statement."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from database.models import SubtaskStatus, TaskDetail, TaskStatus
from master_app.planning import LocalPlanner
from master_app.service import CancelResult, GridService, ProgressSnapshot
from tests.master.conftest import fast_settings
from tests.master.fakes import FakeWorker, fake_workers
from tests.master.test_bounded_memory import WindowStore


async def test_progress_is_counts_at_a_bounded_rate_while_the_run_goes_on(
        tmp_path: Path) -> None:
    store = WindowStore(tmp_path / "r.db")
    w = FakeWorker("a", delay_s=0.01, capacity=2)
    snaps: list[ProgressSnapshot] = []
    stop = threading.Event()
    try:
        with fake_workers(w) as urls:
            worker = store.add_worker(urls[0], name="alpha", max_concurrency=2)
            service = GridService(store, fast_settings(NADG_HEDGING=False))
            service._progress.min_interval_s = 0.1
            task_id = service.submit("noop 120", LocalPlanner().plan("noop 120", None, []),
                                     None)
            reads_before = store.whole_reads

            def watch() -> None:  # a page polling as fast as it can, in its own thread
                while not stop.is_set():
                    snaps.append(service.progress(task_id))

            watcher = threading.Thread(target=watch)
            started = time.monotonic()
            watcher.start()
            try:
                outcome = await service.run(task_id)
            finally:
                stop.set()
                await asyncio.to_thread(watcher.join, 10)
            elapsed = time.monotonic() - started
        assert outcome.ok
        assert store.whole_reads - reads_before == 1, "only the run read the task whole"
        assert service._progress.reads <= elapsed / 0.1 + 2, "reads are rate-bounded"
        assert len(snaps) > service._progress.reads, "pages share snapshots"
        for snap in snaps:
            assert snap.total == 120
            assert (snap.completed + snap.running + snap.pending + snap.failed
                    + snap.cancelled) == 120
        done = [s.completed for s in snaps]
        assert done == sorted(done), "progress never goes backwards"
        service._progress.min_interval_s = 0.0  # the next read is fresh
        final = service.progress(task_id)
        assert final.completed == 120 and final.fraction == 1.0
        assert final.status is TaskStatus.COMPLETED
        assert [(p.worker_id, p.name, p.completed) for p in final.workers] == [
            (worker.id, "alpha", 120)]
    finally:
        store.close()


def test_cancelling_a_task_nothing_runs_is_one_statement(tmp_path: Path) -> None:
    store = WindowStore(tmp_path / "r.db")
    writes: list[str] = []
    original = store.record_result

    def spy(subtask_id: str, status: SubtaskStatus, **kw: object) -> bool:
        writes.append(subtask_id)
        return original(subtask_id, status, **kw)  # type: ignore[arg-type]

    store.record_result = spy  # type: ignore[method-assign]
    try:
        service = GridService(store, fast_settings())
        task_id = service.submit("noop 300", LocalPlanner().plan("noop 300", None, []), None)
        store.record_result(f"{task_id}:0", SubtaskStatus.COMPLETED, result={"kept": 1})
        writes.clear()
        assert service.cancel(task_id) is CancelResult.MARKED
        assert writes == [], "no subtask was cancelled row by row"
        detail: TaskDetail = store.get_task(task_id)
        assert detail.task.status is TaskStatus.CANCELLED
        assert detail.count(SubtaskStatus.CANCELLED) == 299
        assert detail.subtasks[0].result == {"kept": 1}
    finally:
        store.close()
