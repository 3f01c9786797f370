"""The Store contract for batch writes, windows and counts, run against SQLite, Postgres and
Supabase (supabase-py over the local PostgREST server): a batch means exactly what the same
calls one by one would have meant, in one transaction."""

from __future__ import annotations

import threading

import pytest

from database.models import NewSubtask, SubtaskStatus
from database.store import (
    AttemptWrite,
    OutcomeWrite,
    Store,
    SubtaskNotFound,
    TaskNotFound,
    WorkerNotFound,
)

DONE, FAILED, CANCELLED = SubtaskStatus.COMPLETED, SubtaskStatus.FAILED, SubtaskStatus.CANCELLED


def make_task(store: Store, n: int) -> str:
    subs = [NewSubtask(idx=i, kind="noop", payload={"i": i}) for i in range(n)]
    return store.create_task("batch", {}, subs).id


def test_write_batch_records_attempts_then_outcomes(store: Store) -> None:
    w = store.add_worker("http://w:1")
    tid = make_task(store, 3)
    s0, s1, s2 = (f"{tid}:{i}" for i in range(3))
    out = store.write_batch(
        [AttemptWrite(s0, w.id), AttemptWrite(s1, w.id), AttemptWrite(s0, None)],
        [OutcomeWrite(s1, DONE, result={"v": 1}, worker_id=w.id),
         OutcomeWrite(s2, FAILED, error="boom")])
    assert out.attempts == [1, 1, 2]  # what record_attempt would have said, one by one
    assert out.recorded == [True, True]
    subs = {s.id: s for s in store.get_task(tid).subtasks}
    assert subs[s0].status is SubtaskStatus.RUNNING and subs[s0].attempts == 2
    assert subs[s0].worker_id is None and subs[s0].started_at is not None
    assert subs[s1].status is DONE and subs[s1].result == {"v": 1} and subs[s1].attempts == 1
    assert subs[s1].worker_id == w.id and subs[s1].finished_at is not None
    assert subs[s2].status is FAILED and subs[s2].error == "boom"


def test_write_batch_first_completed_wins_within_and_across_batches(store: Store) -> None:
    tid = make_task(store, 2)
    s0, s1 = f"{tid}:0", f"{tid}:1"
    out = store.write_batch([], [
        OutcomeWrite(s0, FAILED, error="first try"),
        OutcomeWrite(s0, DONE, result={"v": "a"}),
        OutcomeWrite(s0, DONE, result={"v": "b"}),
        OutcomeWrite(s0, FAILED, error="late"),
        OutcomeWrite(s1, DONE, result={"v": 1})])
    assert out.recorded == [True, True, False, False, True]
    again = store.write_batch([AttemptWrite(s0, None)],
                              [OutcomeWrite(s0, DONE, result={"v": "c"}),
                               OutcomeWrite(s1, CANCELLED, error="cancelled")])
    assert again.recorded == [False, False] and again.attempts == [1]
    subs = store.get_task(tid).subtasks
    assert [(s.status, s.result) for s in subs] == [(DONE, {"v": "a"}), (DONE, {"v": 1})]
    assert subs[0].error is None  # the late failure did not touch the completed row


def test_write_batch_unknown_id_writes_nothing(store: Store) -> None:
    tid = make_task(store, 1)
    with pytest.raises(SubtaskNotFound, match="nope:7"):
        store.write_batch([AttemptWrite(f"{tid}:0", None)],
                          [OutcomeWrite(f"{tid}:0", DONE, result={}),
                           OutcomeWrite("nope:7", DONE, result={})])
    sub = store.get_task(tid).subtasks[0]
    assert sub.status is SubtaskStatus.PENDING and sub.attempts == 0
    with pytest.raises(SubtaskNotFound):
        store.write_batch([AttemptWrite("nope:8", None)], [])
    assert store.write_batch([], []).recorded == []


def test_write_batch_large_batch_and_null_only_columns(store: Store) -> None:
    n = 1200  # more than one set-based statement's chunk
    tid = make_task(store, n)
    ids = [f"{tid}:{i}" for i in range(n)]
    out = store.write_batch([AttemptWrite(i, None) for i in ids],
                            [OutcomeWrite(i, CANCELLED, error=None) for i in ids[::2]])
    assert out.attempts == [1] * n and out.recorded == [True] * (n // 2)
    counts = store.subtask_counts(tid)
    assert counts == {CANCELLED: n // 2, SubtaskStatus.RUNNING: n // 2}


def test_concurrent_batches_exactly_one_completed_result_wins(store: Store) -> None:
    tid = make_task(store, 20)
    ids = [f"{tid}:{i}" for i in range(20)]
    n = 6
    barrier = threading.Barrier(n)
    won: dict[int, list[bool]] = {}

    def write(k: int) -> None:
        barrier.wait()
        won[k] = store.write_batch(
            [], [OutcomeWrite(i, DONE, result={"writer": k}) for i in ids]).recorded

    threads = [threading.Thread(target=write, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(won) == n
    subs = store.get_task(tid).subtasks
    for j, sub in enumerate(subs):
        winners = [k for k in range(n) if won[k][j]]
        assert len(winners) == 1, (sub.id, winners)
        assert sub.result == {"writer": winners[0]}


def test_cancel_unfinished_subtasks_is_one_call_and_keeps_outcomes(store: Store) -> None:
    tid = make_task(store, 5)
    store.record_result(f"{tid}:0", DONE, result={"v": 0})
    store.record_result(f"{tid}:1", FAILED, error="bad input")
    store.record_attempt(f"{tid}:2", None)
    assert store.cancel_unfinished_subtasks(tid, "the deadline passed") == 3
    assert store.cancel_unfinished_subtasks(tid) == 0
    subs = store.get_task(tid).subtasks
    assert [s.status for s in subs] == [DONE, FAILED, CANCELLED, CANCELLED, CANCELLED]
    assert subs[0].result == {"v": 0} and subs[1].error == "bad input"
    assert subs[3].error == "the deadline passed" and subs[3].finished_at is not None
    other = make_task(store, 2)
    assert store.cancel_unfinished_subtasks(other) == 2  # the plain reason: status alone
    assert {(s.status, s.error) for s in store.get_task(other).subtasks} == {
        (CANCELLED, None)}


def test_subtask_window_reads_a_task_in_slices(store: Store) -> None:
    tid = make_task(store, 25)
    store.record_result(f"{tid}:3", DONE, result={})
    seen: list[int] = []
    after = -1
    while True:
        window = store.subtask_window(tid, after_idx=after, limit=10)
        if not window:
            break
        assert len(window) <= 10
        seen += [s.idx for s in window]
        after = window[-1].idx
    assert seen == list(range(25))
    pending = store.subtask_window(tid, after_idx=1, limit=3, statuses=[SubtaskStatus.PENDING])
    assert [s.idx for s in pending] == [2, 4, 5]
    assert store.subtask_window(tid, statuses=[]) == []
    assert store.subtask_window(tid, limit=0) == []


def test_subtask_counts(store: Store) -> None:
    tid = make_task(store, 4)
    assert store.subtask_counts(tid) == {SubtaskStatus.PENDING: 4}
    store.record_result(f"{tid}:0", DONE, result={})
    store.record_attempt(f"{tid}:1", None)
    assert store.subtask_counts(tid) == {SubtaskStatus.PENDING: 2, SubtaskStatus.RUNNING: 1,
                                         DONE: 1}
    with pytest.raises(TaskNotFound):
        store.subtask_counts("no-such-task")


def test_subtask_counts_by_worker(store: Store) -> None:
    a, b = store.add_worker("http://a:1"), store.add_worker("http://b:1")
    tid = make_task(store, 5)
    store.write_batch([AttemptWrite(f"{tid}:0", a.id), AttemptWrite(f"{tid}:1", a.id),
                       AttemptWrite(f"{tid}:2", b.id)],
                      [OutcomeWrite(f"{tid}:0", DONE, result={}, worker_id=a.id)])
    assert store.subtask_counts_by_worker(tid) == {
        a.id: {DONE: 1, SubtaskStatus.RUNNING: 1}, b.id: {SubtaskStatus.RUNNING: 1},
        None: {SubtaskStatus.PENDING: 2}}
    with pytest.raises(TaskNotFound):
        store.subtask_counts_by_worker("no-such-task")


def test_get_task_record_reads_the_row_alone(store: Store) -> None:
    tid = make_task(store, 3)
    record = store.get_task_record(tid)
    assert record == store.get_task(tid).task and record.subtask_count == 3
    with pytest.raises(TaskNotFound):
        store.get_task_record("no-such-task")


def test_record_dispatches_counts_many_in_one_write(store: Store) -> None:
    w = store.add_worker("http://w:1")
    store.record_dispatches(w.id, ok=7, failed=2, latency_ms=3.5)
    store.record_dispatches(w.id, ok=3)
    got = store.get_worker(w.id)
    assert got.total_tasks == 10 and got.last_latency_ms == 3.5
    with pytest.raises(WorkerNotFound):
        store.record_dispatches(424242, ok=1)
