"""A task on pull workers only through the PostgREST stand-in: the workers hold the anon
key and their credential, never the service key; the master uses the service key."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from database.backends.supabase import SupabaseStore
from database.leases import lease_store
from database.models import NewSubtask, SubtaskStatus
from master_app.service import GridService
from tests.database.conftest import SERVICE_KEY
from tests.pull.conftest import ANON_KEY, PullDb, PullProcess, master_settings, wait_registered


def test_a_task_completes_on_pull_workers_through_supabase_rpc(
        pull_db: PullDb, postgrest_url: str, pull_workers: Callable[..., PullProcess]) -> None:
    pull_db.sql("UPDATE tasks SET status = 'completed' WHERE status = 'running'")
    store = SupabaseStore(postgrest_url, SERVICE_KEY)
    try:
        leases = lease_store(store)
        assert leases is not None
        env = {"SUPABASE_URL": postgrest_url, "SUPABASE_ANON_KEY": ANON_KEY}
        worker = pull_workers("sb-pull", leases.enroll("sb-pull"), env)
        node = wait_registered(pull_db.store, "sb-pull", worker)
        task = store.create_task("supabase pull", {}, [
            NewSubtask(i, "noop", {"kind": "noop", "echo": i}) for i in range(6)])
        outcome = asyncio.run(GridService(store, master_settings()).run(task.id))
        assert outcome.ok, (outcome.error, worker.output()[-2000:])
        detail = store.get_task(task.id)
        assert all(s.status is SubtaskStatus.COMPLETED and s.worker_id == node.id
                   for s in detail.subtasks)
        assert [s.result["output"]["echo"] for s in detail.subtasks  # type: ignore[index]
                ] == list(range(6))
        assert "service" not in worker.output().lower() or "SERVICE_KEY" not in worker.output()
    finally:
        store.close()
