"""JobRunner persistence and aggregation against fake workers and a real SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from database.backends.sqlite import SqliteStore
from database.models import SubtaskStatus, TaskStatus
from database.store import AttemptWrite, BatchWritten, OutcomeWrite, StoreUnavailable
from master_app.aggregate import aggregate
from master_app.intake import load_dataset
from master_app.planning import LocalPlanner, parse_plan
from master_app.service import JobRunner, NoLiveWorkers
from nexus_common.protocol import SubtaskResult
from tests.master.conftest import fast_settings
from tests.master.fakes import FakeWorker, fake_workers
from tests.master.test_intake import EXAMPLES


def test_submit_persists_everything_before_dispatch(store: SqliteStore) -> None:
    store.add_worker("http://127.0.0.1:9", max_concurrency=2)
    runner = JobRunner(store, fast_settings())
    data = load_dataset(EXAMPLES / "tickets.csv")
    plan = LocalPlanner().plan("classify as billing / bug / feature", data.summary(), [])
    task_id = runner.submit("classify", plan, data)
    detail = store.get_task(task_id)
    assert detail.task.status is TaskStatus.PENDING
    assert detail.task.plan["operation"] == "classify"
    assert all(s.status is SubtaskStatus.PENDING and s.attempts == 0 for s in detail.subtasks)
    assert [r for s in detail.subtasks for r in s.payload["rows"]] == list(range(40))
    assert store.list_unfinished_tasks()[0].id == task_id


async def test_run_records_each_result_and_counts_attempts(store: SqliteStore) -> None:
    a, b = FakeWorker("a", delay_s=0.01), FakeWorker("b", mode="http500")
    with fake_workers(a, b) as urls:
        store.add_worker(urls[0], max_concurrency=2)
        store.add_worker(urls[1], max_concurrency=2)
        settings = fast_settings(NADG_CIRCUIT_COOLDOWN_S=60, NADG_HEDGING=False)
        async with JobRunner(store, settings) as runner:
            plan = LocalPlanner().plan("noop 12", None, [])
            task_id = runner.submit("noop 12", plan, None)
            outcome = await runner.run(task_id)
            again = await runner.run(task_id)
    assert outcome.ok and outcome.completed == 12 and outcome.failures == []
    assert again.ok and again.report is None, "a finished task is not dispatched again"
    detail = store.get_task(task_id)
    assert detail.task.result_summary is not None
    assert detail.task.result_summary["completed"] == 12
    assert sum(s.attempts for s in detail.subtasks) == outcome.report.attempts  # type: ignore[union-attr]
    assert all(s.worker_id == store.find_worker(urls[0]).id for s in detail.subtasks)  # type: ignore[union-attr]


async def test_failures_are_listed_exactly(store: SqliteStore) -> None:
    w = FakeWorker("f", mode="fail")
    with fake_workers(w) as urls:
        store.add_worker(urls[0])
        async with JobRunner(store, fast_settings()) as runner:
            task_id = runner.submit("noop 3", LocalPlanner().plan("noop 3", None, []), None)
            outcome = await runner.run(task_id)
    assert outcome.status is TaskStatus.FAILED
    assert outcome.error == "3 of 3 subtasks failed: failed: it broke"
    result = aggregate(store.get_task(task_id))
    assert [(f.idx, f.reason) for f in result.failures] == [(i, "failed: it broke")
                                                            for i in range(3)]


def _complete(store: SqliteStore, task_id: str, outputs: list[dict[str, object]]) -> None:
    for sub, output in zip(store.get_task(task_id).subtasks, outputs, strict=True):
        result = SubtaskResult(id=sub.id, status="completed", output=output)
        store.record_result(sub.id, SubtaskStatus.COMPLETED, result=result.model_dump())


def test_aggregate_classify_embed_and_python(store: SqliteStore, tmp_path: Path) -> None:
    runner = JobRunner(store, fast_settings())
    data = load_dataset(b"a\nb\nc\n", "t.txt")
    plan = parse_plan({"operation": "classify", "text_column": "text", "shard_size": 2,
                       "params": {"labels": ["x", "y"]}})
    task_id = runner.submit("c", plan, data)
    _complete(store, task_id, [{"labels": ["x", "y"], "scores": [[0.9, 0.1], [0.2, 0.8]]},
                               {"labels": ["x"], "scores": [[0.6, 0.4]]}])
    res = aggregate(store.get_task(task_id))
    assert res.table["text"].tolist() == ["a", "b", "c"]
    assert res.table["label"].tolist() == ["x", "y", "x"]
    assert res.label_counts == {"x": 2, "y": 1}

    embed = parse_plan({"operation": "embed", "text_column": "text", "shard_size": 2})
    task_id = runner.submit("e", embed, data)
    sub = store.get_task(task_id).subtasks
    store.record_result(sub[0].id, SubtaskStatus.COMPLETED, result=SubtaskResult(
        id=sub[0].id, status="completed",
        output={"embeddings": [[1.0, 0.0], [0.0, 1.0]]}).model_dump())
    store.record_result(sub[1].id, SubtaskStatus.FAILED, error="worker gone")
    res = aggregate(store.get_task(task_id))
    assert res.matrix is not None and res.matrix.shape == (3, 2)
    assert np.isnan(res.matrix[2]).all() and res.matrix[1].tolist() == [0.0, 1.0]
    assert [(f.idx, f.rows, f.reason) for f in res.failures] == [(1, (2,), "worker gone")]
    files = res.save(tmp_path / "emb.npy")
    assert np.load(files[0]).shape == (3, 2) and files[1].suffix == ".csv"

    py = LocalPlanner().plan("run python over range(3): RESULT = INPUT ** 2", None, [])
    task_id = runner.submit("p", py, None)
    _complete(store, task_id, [{"exit_code": 0, "result": i * i, "stdout": "", "stderr": ""}
                               for i in range(3)])
    res = aggregate(store.get_task(task_id))
    assert res.table["input"].tolist() == [0, 1, 2]
    assert res.table["output"].tolist() == [0, 1, 4]


class BlipStore(SqliteStore):
    """A real store that cannot write one completed result as it lands (a lock, a dropped
    link): every batch write holding it fails, so only the runner's last look records it."""

    blipped: str | None = None
    blip_status = SubtaskStatus.COMPLETED

    def write_batch(self, attempts: Sequence[AttemptWrite],
                    outcomes: Sequence[OutcomeWrite]) -> BatchWritten:
        for o in outcomes:
            if self.blipped is None and o.status is self.blip_status:
                self.blipped = o.subtask_id
            if o.subtask_id == self.blipped:
                raise StoreUnavailable("database is locked")
        return super().write_batch(attempts, outcomes)


async def test_a_result_the_store_missed_is_recorded_before_the_task_ends(
        tmp_path: Path) -> None:
    store = BlipStore(tmp_path / "blip.db")
    w = FakeWorker("w", delay_s=0.01)
    try:
        with fake_workers(w) as urls:
            store.add_worker(urls[0], max_concurrency=2)
            async with JobRunner(store, fast_settings(NADG_HEDGING=False)) as runner:
                task_id = runner.submit("noop 4", LocalPlanner().plan("noop 4", None, []), None)
                outcome = await runner.run(task_id)
        assert store.blipped is not None, "the store did fail one write"
        assert outcome.ok and outcome.completed == 4, outcome.error
        detail = store.get_task(task_id)
        assert detail.count(SubtaskStatus.COMPLETED) == 4
        assert len(w.calls) == 4, "nothing was run twice"
        missed = next(s for s in detail.subtasks if s.id == store.blipped)
        assert missed.result is not None and missed.result["output"]["echo"] == missed.idx
    finally:
        store.close()


def test_a_subtask_timeout_the_protocol_refuses_is_a_settings_error() -> None:
    with pytest.raises(ValidationError, match="NADG_SUBTASK_TIMEOUT_S"):
        fast_settings(NADG_SUBTASK_TIMEOUT_S=5000)
    assert fast_settings(NADG_SUBTASK_TIMEOUT_S=3600).subtask_timeout_s == 3600


class AttemptBlipStore(SqliteStore):
    """A real store whose first few attempt records fail."""

    blips = 3

    def write_batch(self, attempts: Sequence[AttemptWrite],
                    outcomes: Sequence[OutcomeWrite]) -> BatchWritten:
        if attempts and self.blips > 0:
            self.blips -= 1
            raise StoreUnavailable("database is locked")
        return super().write_batch(attempts, outcomes)


async def test_a_store_hiccup_recording_an_attempt_is_not_the_workers_failure(
        tmp_path: Path) -> None:
    store = AttemptBlipStore(tmp_path / "blip.db")
    w = FakeWorker("w", delay_s=0.01)
    try:
        with fake_workers(w) as urls:
            worker = store.add_worker(urls[0], max_concurrency=1)
            async with JobRunner(store, fast_settings(NADG_HEDGING=False)) as runner:
                task_id = runner.submit("noop 4", LocalPlanner().plan("noop 4", None, []), None)
                outcome = await runner.run(task_id)
                breaker = runner.dispatcher.breaker(worker.id)
        assert store.blips == 0, "the store did fail three attempt records"
        assert outcome.ok and outcome.completed == 4
        assert outcome.report is not None and outcome.report.retries == 0
        assert outcome.report.attempts == 4 and len(w.calls) == 4
        assert breaker.consecutive_failures == 0
    finally:
        store.close()


class FailureBlipStore(BlipStore):
    """A real store that cannot write one failed outcome as it lands."""

    blip_status = SubtaskStatus.FAILED


async def test_a_store_error_recording_a_failure_does_not_strand_the_rest_of_a_batch(
        tmp_path: Path) -> None:
    store = FailureBlipStore(tmp_path / "blip.db")
    w = FakeWorker("w", mode="http500", capacity=2)
    try:
        with fake_workers(w) as urls:
            store.add_worker(urls[0], max_concurrency=2)
            settings = fast_settings(NADG_HEDGING=False, NADG_MAX_ATTEMPTS=1,
                                     NADG_CIRCUIT_FAILURES=50)
            async with JobRunner(store, settings) as runner:
                task_id = runner.submit("noop 3", LocalPlanner().plan("noop 3", None, []), None)
                async with asyncio.timeout(15):
                    outcome = await runner.run(task_id)
        assert w.batches >= 1 and store.blipped is not None
        assert outcome.status is TaskStatus.FAILED and len(outcome.failures) == 3
        assert all("HTTP 500" in f.reason for f in outcome.failures), outcome.failures
    finally:
        store.close()


async def test_resume_without_live_workers_touches_nothing(store: SqliteStore) -> None:
    runner = JobRunner(store, fast_settings())
    task_id = runner.submit("noop 3", LocalPlanner().plan("noop 3", None, []), None)
    with pytest.raises(NoLiveWorkers, match="no live worker"):
        await runner.resume_unfinished()
    await runner.aclose()
    detail = store.get_task(task_id)
    assert detail.task.status is TaskStatus.PENDING, "the task stays resumable"
    assert all(s.status is SubtaskStatus.PENDING and s.attempts == 0 for s in detail.subtasks)


async def test_a_task_that_cannot_resume_does_not_stop_the_others(store: SqliteStore) -> None:
    w = FakeWorker("a", delay_s=0.0)
    with fake_workers(w) as urls:
        store.add_worker(urls[0], max_concurrency=2)
        async with JobRunner(store, fast_settings()) as runner:
            broken = runner.submit("noop 2", LocalPlanner().plan("noop 2", None, []), None)
            fine = runner.submit("noop 2", LocalPlanner().plan("noop 2", None, []), None)
            with sqlite3.connect(store.path) as db:  # a payload the protocol no longer takes
                db.execute("UPDATE subtasks SET payload = ? WHERE task_id = ?",
                           ('{"sleep_ms": "soon"}', broken))
            outcomes = await runner.resume_unfinished()
    by_id = {o.task_id: o for o in outcomes}
    assert by_id[fine].ok and by_id[fine].completed == 2
    assert not by_id[broken].ok and "could not resume" in (by_id[broken].error or "")
    assert store.get_task(fine).task.status is TaskStatus.COMPLETED
