"""Backend choice, clear errors, schema upgrades and concurrency beyond the contract."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from supabase import create_client

from database import StoreConfigError, StoreSettings, StoreUnavailable, open_store
from database.backends.postgres import PostgresStore
from database.backends.sqlite import SqliteStore
from database.models import WorkerStatus
from tests.database.conftest import SERVICE_KEY, dsn_for_schema, truncate
from tests.support.servers import REPO_ROOT, free_port, serve_app

STORE_VARS = ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_KEY", "DATABASE_URL",
              "NADG_REGISTRY")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in STORE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env file
    return monkeypatch


def test_backend_choice(clean_env: pytest.MonkeyPatch) -> None:
    assert StoreSettings().backend == "sqlite"
    assert StoreSettings().registry_path == Path(".nadg/registry.db")
    clean_env.setenv("DATABASE_URL", "postgresql://u:secret@db:5432/x")
    assert StoreSettings().backend == "postgres"
    clean_env.setenv("SUPABASE_URL", "https://p.supabase.co")
    with pytest.raises(StoreConfigError, match="SUPABASE_SERVICE_KEY"):
        StoreSettings().backend  # noqa: B018 - the key is missing: an error, not Postgres
    clean_env.setenv("SUPABASE_SERVICE_KEY", "sb-secret")
    settings = StoreSettings()
    assert settings.backend == "supabase"
    assert "secret" not in settings.describe() and "secret" not in repr(settings)


def test_default_sqlite_path_is_created_and_logged_once(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import database.config as config

    clean_env.setattr(config, "_logged", set())
    with caplog.at_level(logging.INFO, logger="database.config"):
        for _ in range(2):
            open_store().close()
    assert (tmp_path / ".nadg" / "registry.db").exists()
    lines = [r.getMessage() for r in caplog.records if "registry backend" in r.getMessage()]
    assert lines == ["registry backend: sqlite (.nadg/registry.db)"]


def test_a_bad_registry_setting_names_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NADG_DB_TIMEOUT_S", "soon")
    with pytest.raises(StoreUnavailable, match="NADG_DB_TIMEOUT_S") as info:
        open_store()
    assert "soon" not in str(info.value)  # values (perhaps secrets) are never echoed


def test_unreachable_backends_name_the_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases: list[tuple[StoreSettings, str]] = [
        (StoreSettings(NADG_REGISTRY=blocker / "r.db"), "NADG_REGISTRY"),
        (StoreSettings(DATABASE_URL=f"postgresql://u:pw@127.0.0.1:{free_port()}/x",
                       NADG_DB_TIMEOUT_S=3), "DATABASE_URL"),
        (StoreSettings(SUPABASE_URL=f"http://127.0.0.1:{free_port()}",
                       SUPABASE_SERVICE_KEY="k", NADG_DB_TIMEOUT_S=3), "SUPABASE_URL"),
    ]
    for settings, variable in cases:
        with pytest.raises(StoreUnavailable) as info:
            open_store(settings)
        message = str(info.value)
        assert variable in message and "\n" not in message and "pw" not in message


def test_supabase_that_answers_5xx_is_unavailable_naming_the_variable() -> None:
    # a paused free project or a gateway answers an error page, not PostgREST JSON
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    gateway = FastAPI()

    @gateway.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "DELETE", "HEAD"])
    async def down(path: str) -> HTMLResponse:
        return HTMLResponse("<html>503 Service Unavailable</html>", status_code=503)

    other = FastAPI()  # not a Supabase project at all: 404 pages

    with serve_app(gateway, health_path="/") as url, \
            serve_app(other, health_path="/docs") as wrong:
        for target in (url, wrong):
            with pytest.raises(StoreUnavailable, match="SUPABASE_URL") as info:
                open_store(StoreSettings(SUPABASE_URL=target, SUPABASE_SERVICE_KEY="k",
                                         NADG_DB_TIMEOUT_S=3))
            assert "\n" not in str(info.value)


def test_supabase_wrong_key_and_missing_schema(
    postgrest: tuple[str, Any, str], pg_schema: Callable[[], str]
) -> None:
    url, _app, _schema = postgrest
    with pytest.raises(StoreUnavailable, match="SUPABASE_SERVICE_KEY"):
        open_store(StoreSettings(SUPABASE_URL=url, SUPABASE_SERVICE_KEY="wrong"))
    from tests.database.postgrest_server import create_app

    empty = create_app(dsn_for_schema(pg_schema()), service_key=SERVICE_KEY)
    with serve_app(empty, health_path="/") as bare:
        with pytest.raises(StoreUnavailable, match="run database/schema.sql"):
            open_store(StoreSettings(SUPABASE_URL=bare, SUPABASE_SERVICE_KEY=SERVICE_KEY))


def test_supabase_with_database_url_applies_the_schema(
    pg_admin: psycopg.Connection[Any], pg_schema: Callable[[], str]
) -> None:
    from tests.database.postgrest_server import create_app

    schema = pg_schema()
    app = create_app(dsn_for_schema(schema), service_key=SERVICE_KEY)
    with serve_app(app, health_path="/") as url:
        store = open_store(StoreSettings(SUPABASE_URL=url, SUPABASE_SERVICE_KEY=SERVICE_KEY,
                                         DATABASE_URL=dsn_for_schema(schema)))
        assert store.backend_name == "supabase"
        assert store.add_worker("http://w:1").id == 1
        store.close()


def test_supabase_paginates_past_the_row_cap(
    supabase_backend: tuple[Any, str], postgrest: tuple[str, Any, str],
    pg_admin: psycopg.Connection[Any],
) -> None:
    store, schema = supabase_backend
    url, app, _ = postgrest
    truncate(pg_admin, schema)
    with pg_admin.transaction():
        pg_admin.execute(f"SET LOCAL search_path TO {schema}")
        pg_admin.execute("INSERT INTO worker_nodes (vm_url, status)"
                         " SELECT 'http://w:' || g, 'active' FROM generate_series(1, 2100) g")
    raw = create_client(url, SERVICE_KEY).table("worker_nodes").select("id").range(0, 1999)
    assert len(raw.execute().data) == 1000  # the server caps a response like PostgREST
    app.state.stats.requests.clear()
    workers = store.list_workers()
    assert len(workers) == 2100 and [w.id for w in workers] == list(range(1, 2101))
    pages = [q for m, p, q in app.state.stats.requests if p.endswith("/worker_nodes")]
    # full, full, short, then the empty page that ends the read
    assert len(pages) == 4 and all("order=id.asc" in q for q in pages)
    assert [q.split("offset=")[1].split("&")[0] for q in pages] == ["0", "1000", "2000", "2100"]


def test_supabase_reads_everything_under_a_lower_row_cap(
    supabase_backend: tuple[Any, str], postgrest: tuple[str, Any, str],
    pg_admin: psycopg.Connection[Any],
) -> None:
    # a project whose max-rows is 500 answers every 1,000-row page with 500 rows: a short
    # page is not the end, only an empty one is
    store, schema = supabase_backend
    _url, app, _ = postgrest
    truncate(pg_admin, schema)
    with pg_admin.transaction():
        pg_admin.execute(f"SET LOCAL search_path TO {schema}")
        pg_admin.execute("INSERT INTO worker_nodes (vm_url, status)"
                         " SELECT 'http://w:' || g, 'active' FROM generate_series(1, 1500) g")
        pg_admin.execute("INSERT INTO tasks (id, command, plan, status, subtask_count)"
                         " SELECT 'cap' || lpad(g::text, 5, '0'), 't', '{}', 'pending', 0"
                         " FROM generate_series(1, 1200) g ORDER BY g")
    app.state.max_rows = 500
    try:
        app.state.stats.requests.clear()
        workers = store.list_workers()
        assert [w.id for w in workers] == list(range(1, 1501))
        pages = [q for _m, p, q in app.state.stats.requests if p.endswith("/worker_nodes")]
        assert [q.split("offset=")[1].split("&")[0] for q in pages] == [
            "0", "500", "1000", "1500"]
        assert len(store.list_workers([WorkerStatus.ACTIVE])) == 1500
        assert len(store.list_tasks(limit=1100)) == 1100  # a limit above the cap
        assert len(store.list_unfinished_tasks()) == 1200
    finally:
        app.state.max_rows = 1000
        truncate(pg_admin, schema)


def test_schema_is_idempotent_and_upgrades_an_original_nadg_table(
    pg_admin: psycopg.Connection[Any], pg_schema: Callable[[], str]
) -> None:
    schema = pg_schema()
    with pg_admin.transaction():
        pg_admin.execute(f"SET LOCAL search_path TO {schema}")
        pg_admin.execute("CREATE TABLE worker_nodes (id BIGSERIAL PRIMARY KEY, vm_url TEXT UNIQUE,"
                         " status TEXT, total_tasks INTEGER DEFAULT 0, last_ping TIMESTAMPTZ)")
        pg_admin.execute("INSERT INTO worker_nodes (vm_url, status, total_tasks, last_ping)"
                         " VALUES ('https://old.hf.space', 'active', 7, now())")
    for _ in range(2):
        PostgresStore(dsn_for_schema(schema), max_size=1).close()
    psql = shutil.which("psql")
    if psql:  # the file itself is runnable by psql, twice
        for _ in range(2):
            done = subprocess.run(
                [psql, "-v", "ON_ERROR_STOP=1", "-q", "-f", str(REPO_ROOT / "database/schema.sql"),
                 os.environ.get("NADG_TEST_DATABASE_URL",
                                "postgresql://postgres@127.0.0.1:5432/test")],
                env={**os.environ, "PGOPTIONS": f"-csearch_path={schema}"},
                capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
    store = PostgresStore(dsn_for_schema(schema), max_size=2)
    old = store.list_workers()
    assert len(old) == 1 and old[0].total_tasks == 7 and old[0].max_concurrency == 4
    assert old[0].circuit_state.value == "closed" and old[0].last_ping is not None
    assert store.record_ping(old[0].id, ok=True, latency_ms=3.0).last_latency_ms == 3.0
    with pytest.raises(Exception, match="check"):
        with pg_admin.transaction():
            pg_admin.execute(f"SET LOCAL search_path TO {schema}")
            pg_admin.execute("UPDATE worker_nodes SET status = 'sleepy'")
    store.close()


WRITER = textwrap.dedent("""
    import sys
    from database.backends.sqlite import SqliteStore
    store = SqliteStore(sys.argv[1])
    me = store.register_worker(f"http://proc:{sys.argv[2]}")
    for i in range(20):
        store.record_ping(1, ok=False)
        store.record_dispatch(me.id, ok=True)
    store.create_task("from a process", {}, [])
    store.close()
""")


def test_sqlite_concurrent_writers_threads_and_processes(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    store = SqliteStore(path)
    shared = store.add_worker("http://shared:1")
    assert shared.id == 1
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)], cwd=REPO_ROOT)
             for n in range(3)]
    errors: list[BaseException] = []

    def thread_writer(n: int) -> None:
        try:
            for _ in range(20):
                store.record_ping(1, ok=False)
            store.register_worker(f"http://thread:{n}")
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=thread_writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert errors == []
    assert store.get_worker(1).consecutive_failures == 6 * 20
    assert store.get_worker(1).status is WorkerStatus.OFFLINE
    workers = store.list_workers()
    assert len(workers) == 7
    assert sorted(w.total_tasks for w in workers if "proc" in w.vm_url) == [20, 20, 20]
    assert len(store.list_tasks()) == 3
    assert len(store.recent_pings(1, limit=500)) == 120
    store.close()


def test_sqlite_fresh_registry_opens_while_another_writer_holds_it(tmp_path: Path) -> None:
    # a master, the heartbeat and a worker opening a new registry at once: the switch to
    # WAL needs an exclusive lock and SQLite does not wait for it by itself
    import sqlite3

    path = tmp_path / "registry.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE IF NOT EXISTS scratch (a INTEGER)")  # rollback-journal mode
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))  # a short write
    release.start()
    try:
        store = SqliteStore(path)
        assert store._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.add_worker("http://fresh:1")
        store.close()
    finally:
        release.join()
        other.close()


def test_sqlite_error_that_ended_the_transaction_is_a_store_error(tmp_path: Path) -> None:
    # SQLite ends the transaction itself on some errors (a full disk, RAISE(ROLLBACK)):
    # the store must report it as a StoreError and stay usable, not trip on its ROLLBACK
    import sqlite3

    from database.store import StoreError

    path = tmp_path / "registry.db"
    store = SqliteStore(path)
    side = sqlite3.connect(path)
    side.execute("CREATE TRIGGER refuse BEFORE INSERT ON worker_nodes"
                 " WHEN NEW.vm_url LIKE '%refused%' BEGIN SELECT RAISE(ROLLBACK, 'no'); END")
    side.commit()
    side.close()
    with pytest.raises(StoreError):
        store.add_worker("http://refused:1")
    assert store.add_worker("http://fine:1").id >= 1  # same thread, same connection
    assert [w.vm_url for w in store.list_workers()] == ["http://fine:1"]
    store.close()
