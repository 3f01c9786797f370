"""An idle pull worker wakes within a second of new work, without polling the store:
LISTEN/NOTIFY on Postgres, a long-poll claim through the Supabase RPC."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from database.backends.pull_postgres import PostgresPullStore
from database.backends.pull_supabase import SupabasePullStore
from database.leases import Lease
from database.models import NewSubtask, TaskStatus
from tests.pull.conftest import ANON_KEY, PullDb
from tests.support.waiting import wait_until

OWNER = "master:test-wakeup"


def held_running_task(db: PullDb) -> tuple[str, str]:
    """A running task whose one subtask the master holds: (task id, subtask id)."""
    db.sql("UPDATE tasks SET status = 'completed' WHERE status = 'running'")
    task = db.store.create_task("wake", {}, [NewSubtask(0, "noop", {"kind": "noop"})])
    db.leases.hold_subtasks(task.id, None, OWNER, 3600)
    db.store.set_task_status(task.id, TaskStatus.RUNNING)
    return task.id, f"{task.id}:0"


def test_listen_wakes_an_idle_postgres_worker_at_once(pull_db: PullDb) -> None:
    worker = PostgresPullStore(pull_db.pull_dsn, pull_db.leases.enroll("wake-pg"))
    try:
        task_id, sub_id = held_running_task(pull_db)
        assert worker.claim(1, 30) == []  # held by the master: nothing to claim
        while worker.wait_for_work(0.05):  # drain notifications from earlier writes
            pass
        assert worker.wait_for_work(0.3) is False  # idle: nothing wakes it
        woken = threading.Event()

        def wait() -> None:
            if worker.wait_for_work(5):
                woken.set()

        waiter = threading.Thread(target=wait)
        waiter.start()
        released = time.monotonic()
        pull_db.leases.release_subtasks(task_id, [sub_id], OWNER)
        waiter.join(timeout=5)
        assert woken.is_set() and time.monotonic() - released < 1.0
        [lease] = worker.claim(1, 30)
        assert lease.subtask_id == sub_id
    finally:
        worker.close()


def test_a_long_poll_claim_returns_within_a_second_of_new_work(pull_db: PullDb,
                                                               postgrest_url: str) -> None:
    worker = SupabasePullStore(postgrest_url, ANON_KEY, pull_db.leases.enroll("wake-sb"))
    try:
        task_id, sub_id = held_running_task(pull_db)
        with ThreadPoolExecutor(1) as pool:
            waiting: Future[list[Lease]] = pool.submit(worker.claim, 1, 30, None, 8.0)
            wait_until(lambda: pull_db.sql(
                "SELECT 1 FROM pg_stat_activity WHERE state = 'active'"
                " AND query LIKE '%%nadg_pull_claim%%' AND pid <> pg_backend_pid()"),
                timeout=10, what="the long poll to be waiting in the database")
            assert not waiting.done()
            released = time.monotonic()
            pull_db.leases.release_subtasks(task_id, [sub_id], OWNER)
            [lease] = waiting.result(timeout=8)
            assert time.monotonic() - released < 1.0
        assert lease.subtask_id == sub_id
    finally:
        worker.close()
