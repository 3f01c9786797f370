"""Postgres backend through psycopg 3 and a connection pool (``DATABASE_URL``).

A Supabase connection string works unchanged: ``sslmode`` in the URL is honoured, and
prepared statements are off (``prepare_threshold=None``) so the transaction pooler on port
6543 works too. The schema (:func:`database.schema.render`, the text of
``database/schema.sql``) is applied on open under an advisory lock (idempotent); a user
that may not change the tables opens a schema that is already current, and gets
:class:`~database.store.SchemaOutdated` naming ``database/schema.sql`` otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from database.backends.common import dumps
from database.backends.messages import schema_outdated
from database.backends.sql_base import ForeignKeyViolation, UniqueViolation
from database.backends.sql_common import SqlStore
from database.schema import missing_columns, render, required_columns
from database.store import SchemaOutdated, StoreError, StoreUnavailable

logger = logging.getLogger(__name__)

#: Key of the advisory lock that serialises concurrent schema applications.
SCHEMA_LOCK_KEY = 7_312_001


#: Said when the schema is missing or old on a database the store could not upgrade.
OWNER_HINT = "or open the store once as the owner of the tables, which applies it by itself"


def postgres_schema() -> str:
    """The Postgres DDL (the same text as ``database/schema.sql``)."""
    return render("postgres")


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

    def many(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), (tuple(p) for p in params))


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
                    _apply_schema(conn, self._where)
                _check_schema(conn, self._where)
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
        except (errors.UndefinedColumn, errors.UndefinedTable) as exc:  # 42703, 42P01
            raise SchemaOutdated(schema_outdated(f"Postgres at {self._where}", _first_line(exc),
                                                 hint=OWNER_HINT)) from exc
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


def _apply_schema(conn: psycopg.Connection[Any], where: str) -> None:
    """Run the schema (idempotent) under an advisory lock, in one transaction.

    A user without the right to change the tables (not their owner) cannot upgrade them:
    that is logged and the schema is then checked as it stands (:func:`_check_schema`).
    """
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            conn.execute(postgres_schema().encode())
    except errors.InsufficientPrivilege as exc:
        logger.warning("could not apply the schema at %s as this user (%s); using the tables"
                       " as they are", where, _first_line(exc))


def _check_schema(conn: psycopg.Connection[Any], where: str) -> None:
    """Raise SchemaOutdated unless every table and column the store uses exists."""
    found: dict[str, set[str]] = {}
    with conn.transaction():
        for table, column in conn.execute(
                "SELECT t.name, a.attname FROM unnest(%s::text[]) AS t(name)"
                " JOIN pg_attribute a ON a.attrelid = to_regclass(t.name)"
                " WHERE a.attnum > 0 AND NOT a.attisdropped",
                (list(required_columns()),)).fetchall():
            found.setdefault(table, set()).add(column)
    missing = missing_columns(found)
    if missing:
        raise SchemaOutdated(schema_outdated(f"Postgres at {where}", _describe(missing),
                                             hint=OWNER_HINT))


def _describe(missing: list[str], shown: int = 4) -> str:
    """``no table a, b; no column t.x, t.y and 3 more`` from :func:`missing_columns`."""
    tables = [m for m in missing if "." not in m]
    columns = [m for m in missing if "." in m]
    parts = []
    if tables:
        parts.append("no table " + ", ".join(tables))
    if columns:
        more = f" and {len(columns) - shown} more" if len(columns) > shown else ""
        parts.append("no column " + ", ".join(columns[:shown]) + more)
    return "; ".join(parts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
