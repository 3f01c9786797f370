"""GridService.cancel: a run here is told to stop; a task nothing runs is marked; a finished
task is left alone."""

from __future__ import annotations

import asyncio
import threading

from database.backends.sqlite import SqliteStore
from database.models import SubtaskStatus, TaskStatus
from master_app.planning import LocalPlanner
from master_app.service import CancelResult, GridService
from tests.master.conftest import fast_settings
from tests.master.fakes import FakeWorker, fake_workers
from tests.support.waiting import wait_until


def _submit(service: GridService, command: str) -> str:
    return service.submit(command, LocalPlanner().plan(command, None, []), None)


def test_cancel_from_another_thread_stops_a_run_here(store: SqliteStore) -> None:
    w = FakeWorker("slow", delay_s=0.2)
    with fake_workers(w) as urls:
        store.add_worker(urls[0], max_concurrency=1)
        service = GridService(store, fast_settings(NADG_HEDGING=False))
        task_id = _submit(service, "noop 20")
        outcome: list[object] = []
        runner = threading.Thread(target=lambda: outcome.append(asyncio.run(service.run(task_id))))
        runner.start()
        wait_until(lambda: service.is_running_here(task_id) and w.calls, timeout=10,
                   what="the run to start")
        assert service.cancel(task_id) is CancelResult.SIGNALLED
        runner.join(timeout=20)
    assert not runner.is_alive()
    [done] = outcome
    assert done.status is TaskStatus.CANCELLED  # type: ignore[attr-defined]
    assert len(w.calls) < 20, "no new subtasks started after the cancel"
    assert store.get_task(task_id).task.status is TaskStatus.CANCELLED
    assert not service.is_running_here(task_id)


def test_cancel_marks_a_task_nothing_runs_and_leaves_a_finished_one(
        store: SqliteStore) -> None:
    service = GridService(store, fast_settings())
    stale = _submit(service, "noop 3")  # persisted, never run: as after a master crash
    assert service.cancel(stale) is CancelResult.MARKED
    detail = store.get_task(stale)
    assert detail.task.status is TaskStatus.CANCELLED
    assert all(s.status is SubtaskStatus.CANCELLED for s in detail.subtasks)
    assert stale not in {t.id for t in service.unfinished_tasks()}, "nobody resumes it"
    assert service.cancel(stale) is CancelResult.FINISHED
