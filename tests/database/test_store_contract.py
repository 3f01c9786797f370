"""The Store contract, run unchanged against SQLite, Postgres and Supabase (supabase-py
talking to the local PostgREST server over the real Postgres)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from database.models import (
    CircuitState,
    ModelRecord,
    NewSubtask,
    SubtaskStatus,
    TaskStatus,
    WorkerStatus,
)
from database.store import (
    DuplicateWorker,
    Store,
    StoreError,
    SubtaskNotFound,
    TaskNotFound,
    WorkerNotFound,
)


def subtasks(n: int, kind: str = "noop") -> list[NewSubtask]:
    return [NewSubtask(idx=i, kind=kind, payload={"i": i, "text": f"row {i}"}) for i in range(n)]


# -- workers ------------------------------------------------------------------------------


def test_is_a_store(store: Store) -> None:
    assert isinstance(store, Store)
    assert store.backend_name in {"sqlite", "postgres", "supabase"}


def test_add_get_find_and_duplicate(store: Store) -> None:
    w = store.add_worker("http://127.0.0.1:7001/", name="alpha", capabilities=["embed", "noop"],
                         max_concurrency=3)
    assert w.vm_url == "http://127.0.0.1:7001"
    assert (w.name, w.capabilities, w.max_concurrency) == ("alpha", ("embed", "noop"), 3)
    assert w.status is WorkerStatus.ACTIVE and w.consecutive_failures == 0
    assert w.circuit_state is CircuitState.CLOSED and w.total_tasks == 0
    assert w.created_at is not None and w.created_at.tzinfo is not None
    assert store.get_worker(w.id) == w
    assert store.find_worker("http://127.0.0.1:7001") == w
    assert store.find_worker("http://127.0.0.1:9999") is None
    with pytest.raises(DuplicateWorker, match="already registered"):
        store.add_worker("http://127.0.0.1:7001")
    assert len(store.list_workers()) == 1


def test_list_by_status_set_status_and_remove(store: Store) -> None:
    a = store.add_worker("http://a:1")
    b = store.add_worker("http://b:1", status=WorkerStatus.OFFLINE)
    c = store.add_worker("http://c:1")
    assert [w.id for w in store.list_workers()] == [a.id, b.id, c.id]
    assert store.set_worker_status(c.id, WorkerStatus.DRAINING).status is WorkerStatus.DRAINING
    assert [w.id for w in store.list_workers([WorkerStatus.ACTIVE])] == [a.id]
    assert [w.id for w in store.list_workers([WorkerStatus.OFFLINE, WorkerStatus.DRAINING])] == [
        b.id, c.id]
    assert store.list_workers([]) == []
    store.remove_worker(b.id)
    assert [w.id for w in store.list_workers()] == [a.id, c.id]


def test_unknown_ids_raise(store: Store) -> None:
    with pytest.raises(WorkerNotFound):
        store.get_worker(424242)
    with pytest.raises(WorkerNotFound):
        store.set_worker_status(424242, WorkerStatus.ACTIVE)
    with pytest.raises(WorkerNotFound):
        store.record_ping(424242, ok=True)
    with pytest.raises(WorkerNotFound):
        store.record_dispatch(424242, ok=True)
    with pytest.raises(WorkerNotFound):
        store.set_circuit_state(424242, CircuitState.OPEN)
    with pytest.raises(WorkerNotFound):
        store.remove_worker(424242)
    with pytest.raises(TaskNotFound):
        store.get_task("nope")
    with pytest.raises(TaskNotFound):
        store.set_task_status("nope", TaskStatus.RUNNING)
    with pytest.raises(SubtaskNotFound):
        store.record_attempt("nope:0", None)
    with pytest.raises(SubtaskNotFound):
        store.record_result("nope:0", SubtaskStatus.COMPLETED)


def test_ping_rule(store: Store) -> None:
    w = store.add_worker("http://w:1")
    w = store.record_ping(w.id, ok=False, error="connect refused")
    assert (w.status, w.consecutive_failures) == (WorkerStatus.ACTIVE, 1)
    assert w.last_ping is None
    w = store.record_ping(w.id, ok=False, error="timeout")
    assert (w.status, w.consecutive_failures) == (WorkerStatus.OFFLINE, 2)
    w = store.record_ping(w.id, ok=True, latency_ms=12.5, version="1.2.3")
    assert (w.status, w.consecutive_failures) == (WorkerStatus.ACTIVE, 0)
    assert w.last_latency_ms == pytest.approx(12.5) and w.version == "1.2.3"
    assert w.last_ping is not None and abs((datetime.now(UTC) - w.last_ping).total_seconds()) < 60
    pings = store.recent_pings(w.id)
    assert [p.ok for p in pings] == [True, False, False]
    assert pings[1].error == "timeout" and pings[0].latency_ms == pytest.approx(12.5)
    assert len(store.recent_pings(w.id, limit=2)) == 2


def test_draining_stays_draining_and_busy_stays_busy(store: Store) -> None:
    d = store.add_worker("http://d:1", status=WorkerStatus.DRAINING)
    for ok in (False, False, True):
        assert store.record_ping(d.id, ok=ok).status is WorkerStatus.DRAINING
    b = store.add_worker("http://b:1", status=WorkerStatus.BUSY)
    assert store.record_ping(b.id, ok=True).status is WorkerStatus.BUSY


def test_register_worker_upserts(store: Store) -> None:
    w = store.register_worker("http://r:1", name="r", capabilities=["embed"], version="0.1")
    assert w.status is WorkerStatus.ACTIVE and w.last_ping is not None
    store.record_ping(w.id, ok=False)
    store.record_ping(w.id, ok=False)
    again = store.register_worker("http://r:1/", capabilities=["embed", "train"], version="0.2")
    assert again.id == w.id and again.name == "r"
    assert again.status is WorkerStatus.ACTIVE and again.consecutive_failures == 0
    assert again.capabilities == ("embed", "train") and again.version == "0.2"
    store.set_worker_status(w.id, WorkerStatus.DRAINING)  # a graceful shutdown, then a restart
    assert store.register_worker("http://r:1").status is WorkerStatus.ACTIVE
    assert len(store.list_workers()) == 1


def test_record_dispatch_and_circuit_state(store: Store) -> None:
    w = store.add_worker("http://w:1")
    store.record_dispatch(w.id, ok=True, latency_ms=30.0)
    store.record_dispatch(w.id, ok=True)
    store.record_dispatch(w.id, ok=False)
    store.set_circuit_state(w.id, CircuitState.HALF_OPEN)
    got = store.get_worker(w.id)
    assert got.total_tasks == 2 and got.last_latency_ms == pytest.approx(30.0)
    assert got.circuit_state is CircuitState.HALF_OPEN


def test_concurrent_pings_lose_no_update(store: Store) -> None:
    w = store.add_worker("http://w:1")
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def fail_three() -> None:
        barrier.wait()
        try:
            for _ in range(3):
                store.record_ping(w.id, ok=False)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=fail_three) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    got = store.get_worker(w.id)
    assert got.consecutive_failures == 18 and got.status is WorkerStatus.OFFLINE


# -- tasks ----------------------------------------------------------------------------------


def test_create_and_get_task(store: Store) -> None:
    task = store.create_task("embed the corpus", {"kind": "embed", "shards": 3}, subtasks(3))
    assert task.status is TaskStatus.PENDING and task.subtask_count == 3
    assert task.plan == {"kind": "embed", "shards": 3}
    detail = store.get_task(task.id)
    assert detail.task == task
    assert [s.idx for s in detail.subtasks] == [0, 1, 2]
    assert [s.id for s in detail.subtasks] == [f"{task.id}:{i}" for i in range(3)]
    assert detail.subtasks[2].payload == {"i": 2, "text": "row 2"}
    assert detail.count(SubtaskStatus.PENDING) == 3


def test_get_task_orders_subtasks_by_idx(store: Store) -> None:
    order = [5, 0, 12, 3, 1]
    task = store.create_task("c", {}, [NewSubtask(i, "noop", {}) for i in order])
    assert [s.idx for s in store.get_task(task.id).subtasks] == sorted(order)


def test_create_task_is_atomic(store: Store) -> None:
    bad = [NewSubtask(0, "noop", {}), NewSubtask(1, "noop", {}), NewSubtask(1, "noop", {})]
    with pytest.raises(StoreError, match="nothing was stored"):
        store.create_task("broken", {}, bad)
    assert store.list_tasks() == []
    assert store.list_unfinished_tasks() == []


def test_set_task_status_timestamps(store: Store) -> None:
    task = store.create_task("c", {}, subtasks(1))
    running = store.set_task_status(task.id, TaskStatus.RUNNING)
    assert running.started_at is not None and running.finished_at is None
    done = store.set_task_status(task.id, TaskStatus.COMPLETED, result_summary={"rows": 4})
    assert done.started_at == running.started_at and done.finished_at is not None
    assert done.result_summary == {"rows": 4}
    failed = store.create_task("d", {}, [])
    got = store.set_task_status(failed.id, TaskStatus.FAILED, error="planner said no")
    assert got.error == "planner said no" and got.status is TaskStatus.FAILED


def test_record_attempt(store: Store) -> None:
    w = store.add_worker("http://w:1")
    task = store.create_task("c", {}, subtasks(2))
    sid = f"{task.id}:0"
    assert store.record_attempt(sid, w.id) == 1
    assert store.record_attempt(sid, None) == 2
    sub = store.get_task(task.id).subtasks[0]
    assert sub.status is SubtaskStatus.RUNNING and sub.attempts == 2
    assert sub.started_at is not None
    store.record_result(sid, SubtaskStatus.COMPLETED, result={"ok": 1}, worker_id=w.id)
    assert store.record_attempt(sid, None) == 3  # a hedged copy: counted, status kept
    sub = store.get_task(task.id).subtasks[0]
    assert sub.status is SubtaskStatus.COMPLETED and sub.worker_id == w.id


def test_record_result_first_completed_wins(store: Store) -> None:
    task = store.create_task("c", {}, subtasks(1))
    sid = f"{task.id}:0"
    assert store.record_result(sid, SubtaskStatus.FAILED, error="oom") is True
    assert store.record_result(sid, SubtaskStatus.COMPLETED, result={"v": 1}) is True
    assert store.record_result(sid, SubtaskStatus.COMPLETED, result={"v": 2}) is False
    assert store.record_result(sid, SubtaskStatus.FAILED, error="late") is False
    sub = store.get_task(task.id).subtasks[0]
    assert sub.status is SubtaskStatus.COMPLETED and sub.result == {"v": 1}
    assert sub.finished_at is not None


def test_record_result_concurrent_writers_exactly_one_wins(store: Store) -> None:
    task = store.create_task("c", {}, subtasks(1))
    sid = f"{task.id}:0"
    n = 8
    barrier = threading.Barrier(n)
    outcomes: dict[int, bool] = {}

    def write(i: int) -> None:
        barrier.wait()
        outcomes[i] = store.record_result(sid, SubtaskStatus.COMPLETED, result={"writer": i})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [i for i, won in outcomes.items() if won]
    assert len(outcomes) == n and len(winners) == 1
    assert store.get_task(task.id).subtasks[0].result == {"writer": winners[0]}


def test_reset_unfinished_and_subtasks_by_status(store: Store) -> None:
    task = store.create_task("c", {}, subtasks(4))
    for i in (0, 1, 2):
        store.record_attempt(f"{task.id}:{i}", None)
    store.record_result(f"{task.id}:0", SubtaskStatus.COMPLETED, result={})
    running = store.subtasks_by_status(task.id, [SubtaskStatus.RUNNING])
    assert [s.idx for s in running] == [1, 2]
    assert store.reset_unfinished_subtasks(task.id) == 2
    assert store.reset_unfinished_subtasks(task.id) == 0
    pending = store.subtasks_by_status(task.id, [SubtaskStatus.PENDING])
    assert [s.idx for s in pending] == [1, 2, 3]
    assert store.subtasks_by_status(task.id, []) == []


def test_list_tasks_order_paging_and_filter(store: Store) -> None:
    ids = [store.create_task(f"t{i}", {}, []).id for i in range(7)]
    assert [t.id for t in store.list_tasks()] == ids[::-1]
    assert [t.id for t in store.list_tasks(limit=3, offset=2)] == ids[::-1][2:5]
    store.set_task_status(ids[1], TaskStatus.COMPLETED)
    store.set_task_status(ids[4], TaskStatus.RUNNING)
    assert [t.id for t in store.list_tasks(statuses=[TaskStatus.COMPLETED])] == [ids[1]]
    unfinished = store.list_unfinished_tasks()
    assert [t.id for t in unfinished] == [i for i in ids if i != ids[1]]


def test_list_tasks_beyond_1000_rows(
    store: Store, seed_tasks: Callable[[int], list[str]]
) -> None:
    """PostgREST returns at most 1,000 rows per request: the Supabase backend paginates."""
    ids = seed_tasks(1005)
    listed = store.list_tasks(limit=1100)
    assert len(listed) == 1005
    assert [t.id for t in listed] == ids[::-1]
    assert len(store.list_unfinished_tasks()) == 1005
    assert [t.id for t in store.list_tasks(limit=10, offset=1000)] == ids[::-1][1000:]


# -- models ---------------------------------------------------------------------------------


def test_models_and_deployments(store: Store) -> None:
    w1 = store.add_worker("http://w:1")
    w2 = store.add_worker("http://w:2")
    old = ModelRecord(id="m-old", name="tickets", family="minilm-head", sha256="ab" * 32,
                      uri="file:///m/old", labels=("billing", "bug"), metrics={"acc": 0.8},
                      created_at=datetime(2026, 1, 1, tzinfo=UTC))
    new = ModelRecord(id="m-new", name="tickets v2", family="minilm-head", sha256="cd" * 32,
                      uri="file:///m/new", labels=("billing", "bug", "feature"))
    assert store.add_model(old) == old
    added = store.add_model(new)
    assert added.created_at is not None and added.labels == ("billing", "bug", "feature")
    with pytest.raises(StoreError):
        store.add_model(old)
    assert store.get_model("m-old") == old
    assert store.get_model("missing") is None
    assert [m.id for m in store.list_models()] == ["m-new", "m-old"]
    first = store.record_deployment("m-new", w1.id)
    store.record_deployment("m-new", w2.id)
    again = store.record_deployment("m-new", w1.id)
    assert again.deployed_at >= first.deployed_at
    assert {d.worker_id for d in store.list_deployments("m-new")} == {w1.id, w2.id}
    assert store.list_deployments("m-old") == []
    assert len(store.list_deployments()) == 2
    with pytest.raises(StoreError):
        store.record_deployment("missing", w1.id)
    store.remove_worker(w2.id)
    assert [d.worker_id for d in store.list_deployments()] == [w1.id]
