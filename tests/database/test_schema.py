"""One schema definition: the committed schema.sql, both dialects, and old schemas.

An original NADG project (worker_nodes alone) must get an error naming
database/schema.sql from every backend, and be upgraded in place by that file.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from database import SchemaOutdated, StoreSettings, StoreUnavailable, open_store
from database.backends.postgres import PostgresStore
from database.backends.sqlite import SqliteStore
from database.models import ModelRecord, utcnow
from database.schema import SCHEMA_FILE, render, required_columns
from database.schema.__main__ import main as schema_main
from tests.database.conftest import ADMIN_DSN, SERVICE_KEY, dsn_for_schema
from tests.database.original_nadg import create_original
from tests.support.servers import REPO_ROOT, serve_app


def run_psql(schema: str, *, dsn: str = ADMIN_DSN) -> None:
    """Apply the committed schema.sql to ``schema`` the way an operator does."""
    psql = shutil.which("psql")
    if psql is None:  # psycopg runs the same text
        with psycopg.connect(dsn_for_schema(schema), autocommit=True) as conn:
            conn.execute((REPO_ROOT / SCHEMA_FILE).read_bytes())
        return
    done = subprocess.run(
        [psql, "-v", "ON_ERROR_STOP=1", "-q", "-f", str(REPO_ROOT / SCHEMA_FILE), dsn],
        env={"PATH": "/usr/bin:/bin", "PGOPTIONS": f"-csearch_path={schema}"},
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def pg_columns(admin: psycopg.Connection[Any], schema: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for table, column in admin.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = %s", (schema,)).fetchall():
        found.setdefault(table, set()).add(column)
    return found


# -- the committed file ------------------------------------------------------------------------

def test_committed_schema_sql_is_the_generator_output() -> None:
    committed = (REPO_ROOT / SCHEMA_FILE).read_text("utf-8")
    assert committed == render("postgres"), (
        "database/schema.sql drifted from database/schema/definition.py: regenerate it with"
        " `python -m database.schema --dialect postgres > database/schema.sql`")


def test_schema_command_prints_and_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    printed = subprocess.run(  # the documented command, as a user runs it
        [sys.executable, "-m", "database.schema", "--dialect", "postgres"], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0
    assert printed.stdout == (REPO_ROOT / SCHEMA_FILE).read_text("utf-8")
    assert schema_main(["--check", str(REPO_ROOT / SCHEMA_FILE)]) == 0
    drifted = tmp_path / "schema.sql"
    drifted.write_text(printed.stdout.replace("max_concurrency >= 1", "max_concurrency >= 0"))
    assert schema_main(["--check", str(drifted)]) == 1
    assert "python -m database.schema" in capsys.readouterr().err
    assert schema_main(["--dialect", "sqlite"]) == 0
    lite = capsys.readouterr().out
    assert "JSONB" not in lite and "plpgsql" not in lite
    conn = sqlite3.connect(tmp_path / "r.db")
    conn.executescript(lite)
    conn.close()
    assert schema_main(["--dialect", "oracle"]) == 2
    assert "unknown dialect 'oracle'" in capsys.readouterr().err


def test_the_file_says_it_is_generated_and_keeps_the_in_place_upgrade() -> None:
    text = render("postgres")
    assert "GENERATED from database/schema/definition.py" in text
    # the original NADG's five columns are created, the rest added in place
    create = text.split("CREATE TABLE IF NOT EXISTS worker_nodes (")[1].split(");")[0]
    assert [line.split()[0] for line in create.strip().splitlines()] == [
        "id", "vm_url", "status", "total_tasks", "last_ping"]
    assert "ALTER TABLE worker_nodes ADD COLUMN IF NOT EXISTS capabilities JSONB" in text
    assert "CHECK (status IN ('active', 'busy', 'offline', 'draining')) NOT VALID" in text
    assert "CREATE OR REPLACE FUNCTION nadg_create_task(" in text
    assert text.rstrip().endswith("NOTIFY pgrst, 'reload schema';")


# -- both dialects from one definition ------------------------------------------------------

def test_both_dialects_make_every_table_and_column(
    postgres_backend: tuple[Any, str], pg_admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    wanted = {table: set(columns) for table, columns in required_columns().items()}
    assert set(wanted) == {"worker_nodes", "worker_pings", "tasks", "subtasks", "models",
                           "model_deployments", "pull_credentials"}
    _store, schema = postgres_backend
    assert pg_columns(pg_admin, schema) == wanted
    sqlite = SqliteStore(tmp_path / "r.db")
    conn = sqlite._conn()
    lite = {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")}
            for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                     " AND name NOT LIKE 'sqlite_%'")}
    sqlite.close()
    assert lite == wanted


def test_both_dialects_enforce_the_same_checks(
    postgres_backend: tuple[Any, str], pg_admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    _store, schema = postgres_backend
    sqlite = SqliteStore(tmp_path / "r.db")
    conn = sqlite._conn()
    bad = ["INSERT INTO worker_nodes (vm_url, status) VALUES ('http://x:1', 'sleepy')",
           "INSERT INTO worker_nodes (vm_url, max_concurrency) VALUES ('http://x:2', 0)",
           "INSERT INTO worker_nodes (vm_url, circuit_state) VALUES ('http://x:3', 'ajar')",
           "INSERT INTO tasks (id, seq, command, status) VALUES ('t', 1, 'c', 'lost')"]
    for statement in bad:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(statement)
        with pytest.raises(psycopg.errors.CheckViolation):
            with pg_admin.transaction():
                pg_admin.execute(f"SET LOCAL search_path TO {schema}")
                pg_admin.execute(statement)
    sqlite.close()


def test_sqlite_time_default_reads_back_as_utc(tmp_path: Path) -> None:
    # a row written without a time (by hand, by an older tool) still reads back
    store = SqliteStore(tmp_path / "r.db")
    store._conn().execute("INSERT INTO models (id, name, family, sha256, uri)"
                          " VALUES ('m1', 'head', 'linear', 'abc', 'file:///m1')")
    model = store.get_model("m1")
    store.close()
    assert isinstance(model, ModelRecord) and model.created_at is not None
    assert abs(model.created_at - utcnow()) < timedelta(seconds=30)


# -- an original NADG project ---------------------------------------------------------------

@pytest.fixture
def dml_role(pg_admin: psycopg.Connection[Any]) -> Iterator[Callable[[str], str]]:
    """A login role that may read and write a schema's tables but not change them (the
    DATABASE_URL of a user who does not own the tables; BYPASSRLS like Supabase's
    service_role). Calling it grants it the tables of a schema as they are now and returns
    its DSN there."""
    role = f"nadg_dml_{uuid.uuid4().hex[:10]}"
    pg_admin.execute(f"CREATE ROLE {role} LOGIN BYPASSRLS")

    def grant(schema: str) -> str:
        pg_admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        pg_admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema}"
                         f" TO {role}")
        pg_admin.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}")
        return dsn_for_schema(schema).replace("postgres@", f"{role}@", 1)

    yield grant
    pg_admin.execute(f"DROP OWNED BY {role}")
    pg_admin.execute(f"DROP ROLE {role}")


def test_original_schema_is_upgraded_in_place_by_the_store(
    pg_admin: psycopg.Connection[Any], pg_schema: Callable[[], str]
) -> None:
    schema = pg_schema()
    create_original(pg_admin, schema)
    store = PostgresStore(dsn_for_schema(schema), max_size=1)  # the owner: applies it
    try:
        workers = store.list_workers()
        assert [(w.vm_url, w.total_tasks) for w in workers] == [
            ("https://alice-nadg-worker.hf.space", 7), ("https://bob-nadg-worker.hf.space", 2)]
        assert store.record_ping(workers[0].id, ok=True, latency_ms=2.0).last_latency_ms == 2.0
        assert store.add_worker("http://new:1", capabilities=["python"]).capabilities == (
            "python",)
    finally:
        store.close()
    assert pg_columns(pg_admin, schema)["task_history"]  # the old table is left alone


def test_original_schema_without_the_right_to_upgrade_names_schema_sql(
    pg_admin: psycopg.Connection[Any], pg_schema: Callable[[], str],
    dml_role: Callable[[str], str],
) -> None:
    schema = pg_schema()
    create_original(pg_admin, schema)
    dsn = dml_role(schema)
    with pytest.raises(SchemaOutdated) as info:
        open_store(StoreSettings(DATABASE_URL=dsn))
    message = str(info.value)
    assert "database/schema.sql" in message and "psql" in message and "\n" not in message
    assert "worker_nodes.capabilities" in message and "tasks" in message
    run_psql(schema)  # what the message says to do, as the owner
    dml_role(schema)  # the new tables too
    store = open_store(StoreSettings(DATABASE_URL=dsn))  # may not upgrade, need not now
    try:
        assert [w.total_tasks for w in store.list_workers()] == [7, 2]
        task = store.create_task("after the upgrade", {}, [])
        assert store.get_task(task.id).task.command == "after the upgrade"
    finally:
        store.close()


def test_postgres_column_gone_under_an_open_store_is_schema_outdated(
    pg_admin: psycopg.Connection[Any], pg_schema: Callable[[], str]
) -> None:
    schema = pg_schema()
    store = PostgresStore(dsn_for_schema(schema), max_size=1)
    try:
        worker = store.add_worker("http://w:1")
        pg_admin.execute(f"ALTER TABLE {schema}.worker_nodes DROP COLUMN consecutive_failures")
        with pytest.raises(SchemaOutdated, match="consecutive_failures") as info:
            store.record_ping(worker.id, ok=False)
        assert "database/schema.sql" in str(info.value)
    finally:
        store.close()


def test_supabase_on_the_original_schema_names_schema_sql(
    pg_admin: psycopg.Connection[Any], pg_schema: Callable[[], str]
) -> None:
    from tests.database.postgrest_server import create_app

    schema = pg_schema()
    create_original(pg_admin, schema)
    app = create_app(dsn_for_schema(schema), service_key=SERVICE_KEY)
    with serve_app(app, health_path="/") as url:
        settings = StoreSettings(SUPABASE_URL=url, SUPABASE_SERVICE_KEY=SERVICE_KEY)
        with pytest.raises(SchemaOutdated) as info:
            open_store(settings)
        message = str(info.value)
        assert "database/schema.sql" in message and "Supabase SQL editor" in message
        assert "42703" in message and "\n" not in message
        run_psql(schema)
        store = open_store(settings)
        try:
            assert [w.total_tasks for w in store.list_workers()] == [7, 2]
            added = store.add_worker("http://new:1", capabilities=["embed"])
            assert added.capabilities == ("embed",)
        finally:
            store.close()


def test_supabase_write_to_a_missing_column_is_schema_outdated(
    pg_admin: psycopg.Connection[Any], pg_schema: Callable[[], str]
) -> None:
    # PGRST204: PostgREST's "Could not find the 'capabilities' column" on a write
    from tests.database.postgrest_server import create_app

    schema = pg_schema()
    PostgresStore(dsn_for_schema(schema), max_size=1).close()
    app = create_app(dsn_for_schema(schema), service_key=SERVICE_KEY)
    with serve_app(app, health_path="/") as url:
        store = open_store(StoreSettings(SUPABASE_URL=url, SUPABASE_SERVICE_KEY=SERVICE_KEY))
        try:
            pg_admin.execute(f"ALTER TABLE {schema}.worker_nodes DROP COLUMN capabilities")
            with pytest.raises(SchemaOutdated, match="PGRST204") as info:
                store.add_worker("http://w:1", capabilities=["python"])
            assert "database/schema.sql" in str(info.value)
            assert isinstance(info.value, StoreUnavailable)
        finally:
            store.close()
