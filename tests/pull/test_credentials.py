"""A pull worker's credential opens its four functions and nothing else, on Postgres (a
login role that is a member of nadg_pull) and on Supabase (the anon key through the
PostgREST stand-in). Every refusal is an attack that is run and must fail."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from postgrest.exceptions import APIError
from supabase import create_client

from database.backends.pull_postgres import PostgresPullStore
from database.backends.pull_supabase import SupabasePullStore
from database.backends.supabase import SupabaseStore
from database.leases import CredentialRefused, credential_hash, lease_store
from database.models import NewSubtask, SubtaskStatus, TaskStatus
from tests.database.conftest import SERVICE_KEY
from tests.pull.conftest import ANON_KEY, STRIPPED, PullDb
from tests.support.servers import REPO_ROOT

TABLES = ("worker_nodes", "worker_pings", "tasks", "subtasks", "models",
          "model_deployments", "pull_credentials")
#: Functions for masters only, with arguments that would do harm if accepted.
MASTER_CALLS: dict[str, dict[str, Any]] = {
    "nadg_task_lease": {"p_task_id": "t", "p_owner": "evil", "p_lease_s": 60, "p_grace_s": 0},
    "nadg_pull_enroll": {"p_name": "evil", "p_hash": "00"},
    "nadg_pull_revoke": {"p_name": "victim"},
    "nadg_hold_subtasks": {"p_task_id": "t", "p_ids": None, "p_owner": "evil",
                           "p_lease_s": 60},
    "nadg_adoptable_tasks": {"p_grace_s": 0},
    "nadg_pull_who": {"p_credential": "x"},
    "nadg_create_task": {"p_id": "evil", "p_command": "x", "p_plan": {}, "p_subtasks": [],
                         "p_now": "2026-01-01T00:00:00+00:00"},
}


def cli(db: PullDb, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m database.manage_workers ARGS`` against ``db`` as its owner."""
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED}
    env["DATABASE_URL"] = db.dsn
    return subprocess.run([sys.executable, "-m", "database.manage_workers", *args],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)


def running_task(db: PullDb, n: int = 1) -> str:
    """The one running task: ``n`` noop subtasks nobody holds (claimable); tasks left
    running by earlier tests are finished first."""
    db.sql("UPDATE tasks SET status = 'completed' WHERE status = 'running'")
    task = db.store.create_task("c", {}, [NewSubtask(i, "noop", {"kind": "noop"})
                                          for i in range(n)])
    db.store.set_task_status(task.id, TaskStatus.RUNNING)
    return task.id


@pytest.fixture
def as_pull_login(pull_db: PullDb) -> Iterator[psycopg.Connection[Any]]:
    """A raw connection as the pull worker's login role (what an attacker holding it has)."""
    with psycopg.connect(pull_db.pull_dsn, autocommit=True) as conn:
        yield conn


def test_enroll_prints_one_line_and_stores_only_its_hash(pull_db: PullDb) -> None:
    done = cli(pull_db, "enroll", "cli-worker")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nadgp_") and len(lines[0]) >= 40
    credential = lines[0]
    row = pull_db.sql("SELECT * FROM pull_credentials WHERE name = 'cli-worker'")[0]
    assert credential_hash(credential) in row and credential not in row
    again = cli(pull_db, "enroll", "cli-worker")
    assert again.returncode == 1 and again.stdout == "" and "revoke it first" in again.stderr
    bad = cli(pull_db, "enroll", "no spaces; drop table")
    assert bad.returncode == 2 and bad.stdout == ""


def test_the_pull_role_reads_and_writes_no_table(as_pull_login: psycopg.Connection[Any],
                                                 pull_db: PullDb) -> None:
    running_task(pull_db)
    for table in TABLES:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_pull_login.execute(f"SELECT * FROM {table}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_pull_login.execute("UPDATE subtasks SET status = 'completed'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_pull_login.execute("INSERT INTO pull_credentials (name, secret_hash) VALUES"
                              " ('evil', 'x')")


@pytest.mark.parametrize("fn", sorted(MASTER_CALLS))
def test_the_pull_role_cannot_call_master_functions(as_pull_login: psycopg.Connection[Any],
                                                    fn: str) -> None:
    args = MASTER_CALLS[fn]
    placeholders = ", ".join(f"{k} => %s" for k in args)
    values = [psycopg.types.json.Jsonb(v) if isinstance(v, dict | list) else v
              for v in args.values()]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_pull_login.execute(f"SELECT {fn}({placeholders})", values)


def test_a_forged_credential_and_a_temp_table_stand_in_are_refused(
        as_pull_login: psycopg.Connection[Any], pull_db: PullDb) -> None:
    forged = "nadgp_forged-credential-0123456789abcdefghijkl"
    with pytest.raises(CredentialRefused):
        PostgresPullStore(pull_db.pull_dsn, forged).claim(1, 10)
    # a temporary table named like the real one must not stand in for it
    as_pull_login.execute("CREATE TEMP TABLE pull_credentials (name TEXT, secret_hash TEXT,"
                          " worker_id BIGINT, created_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ)")
    as_pull_login.execute("INSERT INTO pull_credentials VALUES ('forged', %s, NULL, now(),"
                          " NULL)", (credential_hash(forged),))
    with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification):
        as_pull_login.execute("SELECT * FROM nadg_pull_claim(%s, 1, 10, NULL, 0)", (forged,))


def test_a_worker_cannot_touch_another_workers_lease_and_revoke_ends_it(
        pull_db: PullDb) -> None:
    db = pull_db
    owner = PostgresPullStore(db.pull_dsn, db.leases.enroll("lease-owner"))
    other = PostgresPullStore(db.pull_dsn, db.leases.enroll("lease-thief"))
    try:
        owner.hello(["noop"], 1, "t")
        other.hello(["noop"], 1, "t")
        task_id = running_task(db)
        [lease] = owner.claim(1, 60)
        assert other.claim(1, 60) == []  # leased: not claimable, not visible
        assert other.extend([lease.subtask_id], 60) == []
        assert other.complete(lease.subtask_id, "completed", {"forged": True}, None) is False
        assert other.complete(lease.subtask_id, "failed", None, "sabotage") is False
        sub = db.store.get_task(task_id).subtasks[0]
        assert sub.status is SubtaskStatus.RUNNING and sub.result is None and not sub.error
        done = cli(db, "revoke", "lease-owner")
        assert done.returncode == 0, done.stderr
        with pytest.raises(CredentialRefused):
            owner.complete(lease.subtask_id, "completed", {"late": True}, None)
        with pytest.raises(CredentialRefused):
            owner.claim(1, 60)
        sub = db.store.get_task(task_id).subtasks[0]
        assert sub.status is SubtaskStatus.PENDING and sub.result is None  # back in the queue
        node = db.store.find_worker("pull://lease-owner")
        assert node is not None and node.status.value == "offline"
        assert cli(db, "revoke", "lease-owner").returncode == 1  # nothing left to revoke
        # the other worker now gets it, and its result is the one kept
        [again] = other.claim(1, 60)
        assert again.subtask_id == lease.subtask_id
        assert other.complete(again.subtask_id, "completed", {"ok": 1}, None) is True
        assert other.complete(again.subtask_id, "completed", {"ok": 2}, None) is False
        assert db.store.get_task(task_id).subtasks[0].result == {"ok": 1}
    finally:
        owner.close()
        other.close()


def test_the_anon_key_sees_no_table_and_calls_only_pull_functions(
        pull_db: PullDb, postgrest_url: str) -> None:
    db = pull_db
    running_task(db)
    service = SupabaseStore(postgrest_url, SERVICE_KEY)
    try:
        assert service.list_workers() or True
        assert service.list_tasks()  # the control: the service key sees rows
        anon = create_client(postgrest_url, ANON_KEY)
        for table in TABLES:
            assert db.sql(f"SELECT count(*) FROM {table}")[0][0] >= 0
            assert anon.table(table).select("*").execute().data == [], table
        assert db.sql("SELECT count(*) FROM tasks")[0][0] > 0
        with pytest.raises(APIError) as refused:
            anon.table("tasks").insert({"id": "evil", "command": "x"}).execute()
        assert refused.value.code == "42501"
        assert anon.table("subtasks").update({"status": "completed"}).neq(
            "id", "").execute().data == []
        for fn, args in MASTER_CALLS.items():
            with pytest.raises(APIError) as denied:
                anon.rpc(fn, args).execute()
            assert denied.value.code == "42501", fn
        # enrolled through the service key; the worker needs only the anon key
        leases = lease_store(service)
        assert leases is not None
        worker = SupabasePullStore(postgrest_url, ANON_KEY, leases.enroll("anon-worker"))
        thief = SupabasePullStore(postgrest_url, ANON_KEY, leases.enroll("anon-thief"))
        worker.hello(["noop"], 1, "t")
        [lease] = worker.claim(1, 60)
        assert thief.complete(lease.subtask_id, "completed", {"forged": 1}, None) is False
        assert thief.extend([lease.subtask_id], 60) == []
        leases.revoke("anon-worker")
        with pytest.raises(CredentialRefused):
            worker.complete(lease.subtask_id, "completed", {"late": 1}, None)
        with pytest.raises(CredentialRefused):
            SupabasePullStore(postgrest_url, ANON_KEY, "nadgp_" + "x" * 40).claim(1, 10)
        worker.close()
        thief.close()
    finally:
        service.close()
