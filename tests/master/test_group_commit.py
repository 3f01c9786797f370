"""Group commit: a run's attempts and outcomes reach the store in batches, with the same
guarantees as one write each: nothing acknowledged before it is durable, the first
completed result wins, and one bad item fails only its own caller."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from database.backends.sqlite import SqliteStore
from database.models import NewSubtask, SubtaskStatus, TaskStatus
from database.store import AttemptWrite, BatchWritten, OutcomeWrite, SubtaskNotFound
from master_app.planning import LocalPlanner
from master_app.service import JobRunner
from master_app.service.commit import GroupCommit
from tests.master.conftest import fast_settings
from tests.master.fakes import FakeWorker, fake_workers
from tests.support.waiting import async_wait_until

DONE = SubtaskStatus.COMPLETED


class CountingStore(SqliteStore):
    """A real SQLite store that counts batch writes and the items in them."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[tuple[int, int]] = []
        self.single_writes = 0

    def write_batch(self, attempts: Sequence[AttemptWrite],
                    outcomes: Sequence[OutcomeWrite]) -> BatchWritten:
        self.batches.append((len(attempts), len(outcomes)))
        return super().write_batch(attempts, outcomes)

    def record_result(self, subtask_id: str, status: SubtaskStatus, **kw: object) -> bool:
        self.single_writes += 1
        return super().record_result(subtask_id, status, **kw)  # type: ignore[arg-type]


class GatedStore(SqliteStore):
    """A real store whose batch writes wait until the test opens the gate."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def write_batch(self, attempts: Sequence[AttemptWrite],
                    outcomes: Sequence[OutcomeWrite]) -> BatchWritten:
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return super().write_batch(attempts, outcomes)


def _task(store: SqliteStore, n: int) -> str:
    return store.create_task("t", {}, [NewSubtask(idx=i, kind="noop", payload={})
                                       for i in range(n)]).id


async def test_a_run_writes_in_batches_not_one_transaction_per_item(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "r.db")
    w1, w2 = FakeWorker("a", capacity=8), FakeWorker("b", capacity=8)
    try:
        with fake_workers(w1, w2) as urls:
            for url in urls:
                store.add_worker(url, max_concurrency=8)
            async with JobRunner(store, fast_settings(NADG_HEDGING=False)) as runner:
                task_id = runner.submit("noop 300",
                                        LocalPlanner().plan("noop 300", None, []), None)
                outcome = await runner.run(task_id)
        assert outcome.ok and outcome.completed == 300
        items = sum(a + o for a, o in store.batches)
        assert items == 600, "every attempt and every result went through a batch"
        assert len(store.batches) < 300, f"{len(store.batches)} transactions for 600 writes"
        assert store.single_writes == 0
        detail = store.get_task(task_id)
        assert detail.count(DONE) == 300 and all(s.attempts == 1 for s in detail.subtasks)
        assert all(s.result is not None and s.result["status"] == "completed"
                   for s in detail.subtasks)
    finally:
        store.close()


async def test_an_outcome_is_not_acknowledged_before_its_batch_is_durable(
        tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "r.db")
    try:
        tid = _task(store, 2)
        commit = GroupCommit(store, linger_s=0.0)
        acked = asyncio.ensure_future(commit.outcome(OutcomeWrite(f"{tid}:0", DONE,
                                                                  result={"v": 1})))
        await asyncio.to_thread(store.entered.wait, 10)
        for _ in range(20):  # let every ready callback run: an early ack would show now
            await asyncio.sleep(0)
        assert not acked.done(), "acknowledged while the write was still in flight"
        assert store.get_task(tid).subtasks[0].status is SubtaskStatus.PENDING
        store.gate.set()
        assert await asyncio.wait_for(acked, 10) is True
        assert store.get_task(tid).subtasks[0].result == {"v": 1}
    finally:
        store.gate.set()
        store.close()


async def test_items_queued_during_a_write_go_together_in_the_next(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "r.db")
    counting: list[int] = []
    real = store.write_batch

    def spy(attempts: Sequence[AttemptWrite], outcomes: Sequence[OutcomeWrite]
            ) -> BatchWritten:
        counting.append(len(attempts) + len(outcomes))
        return real(attempts, outcomes)

    store.write_batch = spy  # type: ignore[method-assign]
    try:
        tid = _task(store, 50)
        commit = GroupCommit(store, linger_s=0.0, max_items=1000)
        first = asyncio.ensure_future(commit.outcome(OutcomeWrite(f"{tid}:0", DONE, result={})))
        await asyncio.to_thread(store.entered.wait, 10)
        rest = [asyncio.ensure_future(commit.outcome(OutcomeWrite(f"{tid}:{i}", DONE,
                                                                  result={"i": i})))
                for i in range(1, 50)]
        store.gate.set()
        assert await first is True and all(await asyncio.gather(*rest))
        assert counting == [1, 49]
        assert store.subtask_counts(tid) == {DONE: 50}
    finally:
        store.gate.set()
        store.close()


async def test_one_bad_item_fails_only_its_own_caller(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.db")
    try:
        tid = _task(store, 3)
        commit = GroupCommit(store, linger_s=0.01)
        calls = [commit.outcome(OutcomeWrite(f"{tid}:{i}", DONE, result={"i": i}))
                 for i in range(3)]
        bad = commit.outcome(OutcomeWrite("no-such-task:0", DONE, result={}))
        got = await asyncio.gather(*calls, bad, return_exceptions=True)
        assert got[:3] == [True, True, True]
        assert isinstance(got[3], SubtaskNotFound)
        assert store.subtask_counts(tid) == {DONE: 3}
    finally:
        store.close()


async def test_two_masters_committing_the_same_subtasks_one_result_each(
        tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    a, b = SqliteStore(path), SqliteStore(path)
    try:
        tid = _task(a, 40)
        ca, cb = GroupCommit(a, linger_s=0.001), GroupCommit(b, linger_s=0.001)
        wins = await asyncio.gather(
            *[ca.outcome(OutcomeWrite(f"{tid}:{i}", DONE, result={"by": "a"}))
              for i in range(40)],
            *[cb.outcome(OutcomeWrite(f"{tid}:{i}", DONE, result={"by": "b"}))
              for i in range(40)])
        by_a, by_b = wins[:40], wins[40:]
        for i, sub in enumerate(a.get_task(tid).subtasks):
            assert by_a[i] != by_b[i], f"subtask {i}: exactly one master's result is kept"
            assert sub.result == {"by": "a" if by_a[i] else "b"}
    finally:
        a.close()
        b.close()


async def test_cancelling_a_run_cancels_the_rest_in_one_statement(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "r.db")
    w = FakeWorker("slow", delay_s=0.05, capacity=2)
    cancels: list[int] = []
    real = store.cancel_unfinished_subtasks

    def spy(task_id: str, reason: str = "cancelled") -> int:
        cancels.append(real(task_id, reason))
        return cancels[-1]

    store.cancel_unfinished_subtasks = spy  # type: ignore[method-assign]
    try:
        with fake_workers(w) as urls:
            store.add_worker(urls[0], max_concurrency=2)
            async with JobRunner(store, fast_settings(NADG_HEDGING=False)) as runner:
                task_id = runner.submit("noop 200",
                                        LocalPlanner().plan("noop 200", None, []), None)
                cancel = asyncio.Event()
                run = asyncio.ensure_future(runner.run(task_id, cancel=cancel))

                async def started() -> bool:
                    return len(w.calls) >= 4

                await async_wait_until(started, timeout=20)
                cancel.set()
                outcome = await asyncio.wait_for(run, 30)
        assert outcome.status is TaskStatus.CANCELLED
        assert len(cancels) == 1 and cancels[0] > 100, cancels
        counts = store.subtask_counts(task_id)
        assert counts.get(SubtaskStatus.CANCELLED) == cancels[0]
        assert sum(counts.values()) == 200
        assert counts.get(DONE, 0) + cancels[0] == 200
    finally:
        store.close()


@pytest.mark.parametrize("linger", [0.0, 0.005])
async def test_flush_waits_for_queued_attempts(tmp_path: Path, linger: float) -> None:
    store = SqliteStore(tmp_path / "r.db")
    try:
        tid = _task(store, 5)
        commit = GroupCommit(store, linger_s=linger)
        seen: list[int] = []
        for i in range(5):
            commit.attempt(f"{tid}:{i}", None, on_written=seen.append)
        commit.attempt(f"{tid}:0", None, on_written=seen.append)
        await commit.flush()
        assert sorted(seen) == [1, 1, 1, 1, 1, 2]
        assert store.subtask_counts(tid) == {SubtaskStatus.RUNNING: 5}
    finally:
        store.close()


class _WrongAnswerStore(SqliteStore):
    """A store whose batch write answers for fewer items than it was given."""

    def write_batch(self, attempts: Sequence[AttemptWrite],
                    outcomes: Sequence[OutcomeWrite]) -> BatchWritten:
        done = super().write_batch(attempts, outcomes)
        return BatchWritten(attempts=done.attempts, recorded=done.recorded[:-1])


async def test_a_writer_that_breaks_fails_its_callers_instead_of_leaving_them_waiting(
        tmp_path: Path) -> None:
    store = _WrongAnswerStore(tmp_path / "r.db")
    try:
        tid = _task(store, 2)
        commit = GroupCommit(store, linger_s=0.01)
        calls = [commit.outcome(OutcomeWrite(f"{tid}:{i}", DONE, result={"i": i}))
                 for i in range(2)]
        got = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True),
                                     timeout=10)
        assert any(isinstance(g, ValueError) for g in got), got
    finally:
        store.close()
