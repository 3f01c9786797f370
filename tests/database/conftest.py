"""Fixtures for the store tests: one ``store`` fixture per backend, over real databases.

Postgres: 127.0.0.1:5432 database ``test`` (override with ``NADG_TEST_DATABASE_URL``); each
session works in its own uniquely named schemas, dropped at the end. When Postgres cannot be
reached the Postgres and Supabase cases are skipped, or fail when ``CI`` is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from database.backends.postgres import PostgresStore
from database.backends.sqlite import SqliteStore
from database.store import Store

ADMIN_DSN = os.environ.get("NADG_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
TABLES = "worker_nodes, worker_pings, tasks, subtasks, models, model_deployments"
SERVICE_KEY = "test-service-key"


def dsn_for_schema(schema: str) -> str:
    """The admin DSN with ``search_path`` set to ``schema``."""
    sep = "&" if "?" in ADMIN_DSN else "?"
    return f"{ADMIN_DSN}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection to the test database (skip or fail if unreachable)."""
    try:
        conn = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Postgres at {ADMIN_DSN} is unreachable in CI: {exc}")
        pytest.skip(f"Postgres at {ADMIN_DSN} is unreachable: {exc}")
    with conn:
        yield conn


@pytest.fixture(scope="session")
def pg_schema(pg_admin: psycopg.Connection[tuple[object, ...]]) -> Iterator[Callable[[], str]]:
    """A factory of fresh schemas; every one is dropped at the end of the session."""
    made: list[str] = []

    def make() -> str:
        name = f"nadg_test_{uuid.uuid4().hex[:12]}"
        pg_admin.execute(f"CREATE SCHEMA {name}")
        made.append(name)
        return name

    yield make
    for name in made:
        pg_admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def truncate(pg_admin: psycopg.Connection[tuple[object, ...]], schema: str) -> None:
    """Empty every table of ``schema`` and restart its identities."""
    pg_admin.execute(f"SET search_path TO {schema}")
    pg_admin.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    pg_admin.execute("SET search_path TO public")


@pytest.fixture(scope="session")
def postgres_backend(pg_schema: Callable[[], str]) -> Iterator[tuple[Store, str]]:
    """A PostgresStore on its own schema, for the whole session."""
    schema = pg_schema()
    store = PostgresStore(dsn_for_schema(schema), max_size=12)
    yield store, schema
    store.close()


@pytest.fixture(scope="session")
def postgrest(pg_schema: Callable[[], str]) -> Iterator[tuple[str, object, str]]:
    """The local PostgREST-speaking server over its own schema: (url, app, schema)."""
    from tests.database.postgrest_server import create_app
    from tests.support.servers import serve_app

    schema = pg_schema()
    # The schema is applied the way an operator would: schema.sql through psql/psycopg.
    PostgresStore(dsn_for_schema(schema), max_size=1).close()
    app = create_app(dsn_for_schema(schema), service_key=SERVICE_KEY)
    with serve_app(app, health_path="/") as url:
        yield url, app, schema


@pytest.fixture(scope="session")
def supabase_backend(postgrest: tuple[str, object, str]) -> Iterator[tuple[Store, str]]:
    """A SupabaseStore (supabase-py) talking to the local PostgREST server."""
    from database.backends.supabase import SupabaseStore

    url, _app, schema = postgrest
    store = SupabaseStore(url, SERVICE_KEY)
    yield store, schema
    store.close()


@pytest.fixture(params=["sqlite", "postgres", "supabase"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store of each backend."""
    if request.param == "sqlite":
        sqlite = SqliteStore(tmp_path / "registry.db")
        yield sqlite
        sqlite.close()
        return
    backend, schema = request.getfixturevalue(f"{request.param}_backend")
    truncate(request.getfixturevalue("pg_admin"), schema)
    yield backend


@pytest.fixture
def seed_tasks(store: Store, request: pytest.FixtureRequest) -> Callable[[int], list[str]]:
    """Create ``n`` empty tasks quickly; returns their ids, oldest first.

    Through the store itself, except on Supabase where 1,000 RPC round trips would cost
    seconds: there the rows go straight into its Postgres schema (the reads under test
    still go through supabase-py).
    """
    if store.backend_name != "supabase":
        return lambda n: [store.create_task(f"t{i}", {}, []).id for i in range(n)]
    _backend, schema = request.getfixturevalue("supabase_backend")
    admin = request.getfixturevalue("pg_admin")

    def seed(n: int) -> list[str]:
        with admin.transaction():
            admin.execute(f"SET LOCAL search_path TO {schema}")
            got = admin.execute(
                "INSERT INTO tasks (id, command, plan, status, subtask_count)"
                " SELECT 'seed' || lpad(g::text, 6, '0'), 't' || g, '{}', 'pending', 0"
                " FROM generate_series(0, %s - 1) g ORDER BY g RETURNING id, seq", (n,)
            ).fetchall()
        return [str(r[0]) for r in sorted(got, key=lambda r: r[1])]

    return seed
