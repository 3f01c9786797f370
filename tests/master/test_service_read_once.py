"""A run reads its task (every subtask's result included) from the store once, and the
detail it hands on is the store's, field for field."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from database.backends.sqlite import SqliteStore
from database.models import SubtaskRecord, SubtaskStatus, TaskDetail, TaskStatus
from database.store import AttemptWrite, BatchWritten, OutcomeWrite
from master_app.planning import LocalPlanner
from master_app.service import GridService, aggregate
from nexus_common.protocol import SubtaskResult
from tests.master.conftest import fast_settings
from tests.master.fakes import FakeWorker, fake_workers


class CountingStore(SqliteStore):
    """A real SQLite store that counts reads of a task's detail."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.detail_reads = 0

    def get_task(self, task_id: str) -> TaskDetail:
        self.detail_reads += 1
        return super().get_task(task_id)


def _outcomes(detail: TaskDetail) -> list[tuple[Any, ...]]:
    """What a subtask's row says about how it ended (not when)."""
    def row(s: SubtaskRecord) -> tuple[Any, ...]:
        return (s.id, s.idx, s.status, s.attempts, s.worker_id, s.result, s.error)
    return [row(s) for s in detail.subtasks]


async def _run(service: GridService, command: str) -> tuple[str, Any]:
    plan = LocalPlanner().plan(command, None, [])
    task_id = service.submit(command, plan, None)
    return task_id, await service.run(task_id)


async def test_a_run_reads_the_task_detail_once(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "r.db")
    w = FakeWorker("w", delay_s=0.005)
    try:
        with fake_workers(w) as urls:
            store.add_worker(urls[0], max_concurrency=4)
            service = GridService(store, fast_settings(NADG_HEDGING=False))
            task_id, outcome = await _run(service, "noop 12")
            result = await service.merged(outcome)  # aggregate + reduce, as the CLI does
        assert outcome.ok and outcome.completed == 12
        assert store.detail_reads == 1, "submit -> run -> aggregate -> reduce reads it once"
        assert result.answer is not None and result.answer.ok, result.answer
        stored = SqliteStore.get_task(store, task_id)  # the test's own look, not counted
        assert outcome.detail is not None
        assert outcome.detail.task.status is stored.task.status is TaskStatus.COMPLETED
        kept = dict(stored.task.result_summary or {})
        assert kept.pop("answer") == result.answer.as_dict(), "the answer is kept with the task"
        assert outcome.detail.task.result_summary == kept
        assert _outcomes(outcome.detail) == _outcomes(stored), "the handed-on detail is the store's"
        assert result.table.equals(aggregate(stored).table)
    finally:
        store.close()


async def test_a_failed_run_hands_on_the_store_s_failures(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "r.db")
    bad = FakeWorker("bad", mode="http500")
    try:
        with fake_workers(bad) as urls:
            store.add_worker(urls[0], max_concurrency=2)
            settings = fast_settings(NADG_HEDGING=False, NADG_MAX_ATTEMPTS=2,
                                     NADG_CIRCUIT_FAILURES=50)
            task_id, outcome = await _run(GridService(store, settings), "noop 3")
        assert outcome.status is TaskStatus.FAILED and store.detail_reads == 1
        stored = SqliteStore.get_task(store, task_id)
        assert outcome.detail is not None
        assert _outcomes(outcome.detail) == _outcomes(stored)
        assert all(s.attempts == 2 and s.status is SubtaskStatus.FAILED
                   for s in stored.subtasks)
        assert outcome.error == stored.task.error
    finally:
        store.close()


class RacedStore(CountingStore):
    """Another master records its own result for subtask 0 just before ours lands."""

    raced: str | None = None

    def write_batch(self, attempts: Sequence[AttemptWrite],
                    outcomes: Sequence[OutcomeWrite]) -> BatchWritten:
        for o in outcomes:
            if self.raced is None and o.status is SubtaskStatus.COMPLETED:
                self.raced = o.subtask_id
                theirs = SubtaskResult(id=o.subtask_id, status="completed",
                                       output={"echo": "from the other master"})
                super().record_result(o.subtask_id, SubtaskStatus.COMPLETED,
                                      result=theirs.model_dump(mode="json"))
        return super().write_batch(attempts, outcomes)


async def test_a_result_the_store_refused_is_read_back_not_guessed(tmp_path: Path) -> None:
    store = RacedStore(tmp_path / "r.db")
    w = FakeWorker("w")
    try:
        with fake_workers(w) as urls:
            store.add_worker(urls[0], max_concurrency=2)
            service = GridService(store, fast_settings(NADG_HEDGING=False))
            task_id, outcome = await _run(service, "noop 3")
        assert outcome.ok and store.raced is not None
        assert store.detail_reads == 2, "once to run, once because the store kept another result"
        assert outcome.detail is not None
        raced = next(s for s in outcome.detail.subtasks if s.id == store.raced)
        assert raced.result is not None
        assert raced.result["output"]["echo"] == "from the other master"
        assert _outcomes(outcome.detail) == _outcomes(SqliteStore.get_task(store, task_id))
    finally:
        store.close()
