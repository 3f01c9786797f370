"""Fixtures of the pull-worker tests: a fresh Postgres schema with the Supabase-like roles,
pull workers as subprocesses (``python -m worker_node pull``), and in-process push workers.

Roles (cluster-wide, created once, never dropped: other schemas' grants may name them):
``nadg_pull`` (made by the schema), ``anon`` (Supabase's anonymous role, NOLOGIN) and one
login role per session that is a member of ``nadg_pull`` only, as an operator sets up a
pull worker's Postgres login.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from database.backends.postgres import PostgresStore
from database.leases import LeaseStore, lease_store
from database.models import WorkerNode
from tests.database.conftest import ADMIN_DSN, SERVICE_KEY, dsn_for_schema
from tests.master.conftest import fast_settings
from tests.support.servers import REPO_ROOT, serve_app
from tests.support.signing import GRID_SECRET
from tests.support.waiting import wait_until

ANON_KEY = "test-anon-key-not-a-secret"
#: Environment variables a pull worker subprocess must not inherit from the test run.
STRIPPED = ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_KEY",
            "SUPABASE_ANON_KEY", "NADG_REGISTRY", "NADG_AUTH_TOKEN", "NADG_WORKER_CREDENTIAL")


def with_user(dsn: str, user: str) -> str:
    """``dsn`` logging in as ``user`` (trust auth on the test server)."""
    return dsn.replace("postgresql://postgres@", f"postgresql://{user}@", 1)


@dataclass
class PullDb:
    """One schema of the test database: the owner's store and a pull login's DSN."""

    schema: str
    dsn: str  #: the owner's (what a master uses)
    pull_dsn: str  #: a login role that is a member of nadg_pull and nothing else
    store: PostgresStore
    leases: LeaseStore
    admin: psycopg.Connection[Any]

    def sql(self, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run SQL as the owner in this schema."""
        with self.admin.transaction():
            self.admin.execute(f"SET LOCAL search_path TO {self.schema}")
            cur = self.admin.execute(text, params)
            return cur.fetchall() if cur.description else []


def _ensure_role(admin: psycopg.Connection[Any], create: str, name: str) -> None:
    if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
        try:
            admin.execute(create)
        except psycopg.errors.DuplicateObject:
            pass  # another session made it in between


@pytest.fixture(scope="module")
def pull_db() -> Iterator[PullDb]:
    """A fresh schema with the store applied, Supabase's anon role given Supabase's
    default table grants (so that only RLS stands in its way), and a pull login role."""
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Postgres at {ADMIN_DSN} is unreachable in CI: {exc}")
        pytest.skip(f"Postgres at {ADMIN_DSN} is unreachable: {exc}")
    schema = f"nadg_pull_{uuid.uuid4().hex[:10]}"
    login = f"nadg_pull_login_{uuid.uuid4().hex[:8]}"
    with admin:
        _ensure_role(admin, "CREATE ROLE anon NOLOGIN", "anon")
        admin.execute(f"CREATE SCHEMA {schema}")
        dsn = dsn_for_schema(schema)
        store = PostgresStore(dsn, max_size=6)
        # what a Supabase project grants anon by default; RLS must be what refuses it
        admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO anon")
        admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO anon")
        admin.execute(f"CREATE ROLE {login} LOGIN IN ROLE nadg_pull")
        leases = lease_store(store)
        assert leases is not None
        try:
            yield PullDb(schema, dsn, with_user(dsn, login), store, leases, admin)
        finally:
            store.close()
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
            admin.execute(f"DROP ROLE IF EXISTS {login}")


@pytest.fixture(scope="module")
def postgrest_url(pull_db: PullDb) -> Iterator[str]:
    """The PostgREST stand-in over ``pull_db``'s schema: the service key runs as the owner,
    the anon key as ``anon``."""
    from tests.database.postgrest_server import create_app

    app = create_app(pull_db.dsn, service_key=SERVICE_KEY, anon_key=ANON_KEY)
    with serve_app(app, health_path="/") as url:
        yield url


class PullProcess:
    """``python -m worker_node pull`` as a subprocess, in its own process group."""

    def __init__(self, name: str, credential: str, env: Mapping[str, str], tmp: Path, *,
                 capacity: int = 2, lease_s: float = 2.0) -> None:
        self.name = name
        base = {k: v for k, v in os.environ.items() if k not in STRIPPED}
        base.update(HOME=str(tmp), PYTHONUNBUFFERED="1", NADG_CAPACITY=str(capacity),
                    NADG_QUEUE_SIZE="0", NADG_TORCH_THREADS="1", WORKER_ID=name,
                    NADG_WORKER_CREDENTIAL=credential, **env)
        self.log = tmp / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker_node", "pull", "--lease-s", str(lease_s),
                 "--idle-poll-s", "1", "--timeout-s", "60", "--long-poll-s", "2"],
                cwd=REPO_ROOT, env=base, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def output(self) -> str:
        """What it logged so far."""
        return self.log.read_text("utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def pull_workers(tmp_path: Path) -> Iterator[Callable[..., PullProcess]]:
    """A factory of pull worker subprocesses, all stopped at the end."""
    with ExitStack() as stack:
        def start(name: str, credential: str, env: Mapping[str, str],
                  **options: Any) -> PullProcess:
            proc = PullProcess(name, credential, env, tmp_path, **options)
            stack.callback(proc.stop)
            return proc

        yield start


def wait_registered(store: PostgresStore, name: str, proc: PullProcess) -> WorkerNode:
    """The registry row of pull worker ``name`` once it said hello."""
    def found() -> WorkerNode | None:
        assert proc.proc.poll() is None, f"pull worker {name} exited:\n{proc.output()}"
        return store.find_worker(f"pull://{name}")

    node = wait_until(found, timeout=60, what=f"pull worker {name} to say hello")
    assert node is not None
    return node


def master_settings(**overrides: object) -> Any:
    """Test-sized master settings (the grid secret of the master tests)."""
    return fast_settings(**overrides)


__all__ = ["ANON_KEY", "GRID_SECRET", "PullDb", "PullProcess", "master_settings",
           "wait_registered", "with_user"]
