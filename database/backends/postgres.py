"""Postgres backend through psycopg 3 and a connection pool (``DATABASE_URL``).

A Supabase connection string works unchanged: ``sslmode`` in the URL is honoured, and
prepared statements are off (``prepare_threshold=None``) so the transaction pooler on port
6543 works too. ``schema.sql`` is applied on open under an advisory lock (idempotent).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from typing import Any

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from database.backends.common import dumps
from database.backends.sql_base import ForeignKeyViolation, UniqueViolation
from database.backends.sql_common import SqlStore
from database.store import StoreError, StoreUnavailable

logger = logging.getLogger(__name__)

#: Key of the advisory lock that serialises concurrent schema applications.
SCHEMA_LOCK_KEY = 7_312_001


def postgres_schema() -> str:
    """The text of ``database/schema.sql``."""
    return resources.files("database").joinpath("schema.sql").read_text("utf-8")


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` of a connection string, without user or password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "an unparsable DATABASE_URL"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


class _PgQuery:
    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), tuple(params))
            return list(cur.fetchall()) if cur.description else []

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), tuple(params))
            return cur.rowcount

    def many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        if params:
            with self._conn.cursor() as cur:
                cur.executemany(sql.replace("?", "%s"), [tuple(p) for p in params])


class PostgresStore(SqlStore):
    """The Store on a Postgres database."""

    backend_name = "postgres"
    for_update = " FOR UPDATE"
    task_seq_sql = "DEFAULT"

    def __init__(self, dsn: str, *, max_size: int = 10, timeout_s: float = 10.0,
                 apply_schema: bool = True) -> None:
        self._where = describe_dsn(dsn)
        try:  # one direct connection first: fails fast, with the server's own reason
            with psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s)),
                                 prepare_threshold=None) as conn:
                if apply_schema:
                    _apply_schema(conn)
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot reach Postgres at {self._where}: {_first_line(exc)}; check DATABASE_URL"
            ) from exc
        self._pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            timeout=timeout_s,
            open=False,
            check=ConnectionPool.check_connection,  # replace connections the server dropped
            max_idle=300,
            kwargs={"row_factory": dict_row, "prepare_threshold": None,
                    "connect_timeout": max(1, int(timeout_s))},
            name="nadg-store",
        )
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except (PoolTimeout, psycopg.Error) as exc:
            self._pool.close()
            raise StoreUnavailable(
                f"cannot reach Postgres at {self._where}: {_first_line(exc)}; check DATABASE_URL"
            ) from exc

    @contextmanager
    def _tx(self) -> Iterator[_PgQuery]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _PgQuery(conn)
        except errors.UniqueViolation as exc:
            raise UniqueViolation(_first_line(exc)) from exc
        except errors.ForeignKeyViolation as exc:
            raise ForeignKeyViolation(_first_line(exc)) from exc
        except errors.IntegrityError as exc:
            raise StoreError(f"the database refused the change: {_first_line(exc)}") from exc
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise StoreUnavailable(
                f"lost Postgres at {self._where}: {_first_line(exc)}; check DATABASE_URL"
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(f"Postgres error: {_first_line(exc)}") from exc

    def _json(self, value: Any) -> Any:
        dumps(value)  # raise TypeError/ValueError here, as SQLite does
        return Jsonb(value)

    def _time(self, value: datetime) -> Any:
        return value

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()


def _apply_schema(conn: psycopg.Connection[Any]) -> None:
    """Run schema.sql (idempotent) under an advisory lock, in one transaction."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        conn.execute(postgres_schema().encode())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
