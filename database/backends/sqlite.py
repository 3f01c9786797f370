"""SQLite backend: the embedded default (``NADG_REGISTRY``, default ``.nadg/registry.db``).

WAL mode and a busy timeout let the master, the heartbeat and a worker's self-registration
write at once; every transaction starts with ``BEGIN IMMEDIATE`` so read-modify-write
sequences (a ping) are serialised. One connection per thread. The file is 0600 in a 0700
folder (:mod:`database.backends.sqlite_files`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from database.backends.common import dumps
from database.backends.sql_base import ForeignKeyViolation, UniqueViolation
from database.backends.sql_common import SqlStore
from database.backends.sqlite_files import secure_registry_path
from database.schema import render
from database.store import StoreError, StoreUnavailable

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000


def sqlite_schema() -> str:
    """The SQLite DDL, rendered from the one schema definition (database.schema)."""
    return render("sqlite")


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL mode, waiting while another connection holds a lock.

    Changing the journal mode needs an exclusive lock and SQLite does not call the busy
    handler for it: a master, a heartbeat and a worker opening a fresh registry at once
    would get "database is locked" at once. Retry for up to the busy timeout instead.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.002
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open (SQLite ends some itself on an error:
    a full disk, a trigger's RAISE(ROLLBACK)); never mask the error being handled, and
    never leave the connection inside a transaction that the next BEGIN would trip on."""
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        logger.warning("SQLite rollback failed: %s", exc)


class _SqliteQuery:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self._conn.execute(sql, tuple(params))
        return [dict(r) for r in cur.fetchall()]

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount

    def many(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, (tuple(p) for p in params))


class SqliteStore(SqlStore):
    """The Store on one SQLite file."""

    backend_name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            secure_registry_path(self.path)  # 0600 in 0700: it holds every task's inputs
            conn = self._conn()
            conn.executescript(sqlite_schema())
        except (OSError, sqlite3.Error) as exc:
            self.close()
            hint = ("another process kept it locked; stop that process or point "
                    "NADG_REGISTRY at another file") if "locked" in str(exc) else (
                    "set NADG_REGISTRY to a writable file path")
            raise StoreUnavailable(
                f"cannot open the SQLite registry at {self.path}: {exc}; {hint}"
            ) from exc

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StoreUnavailable(f"the SQLite store at {self.path} is closed")
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error:
            conn.close()
            raise
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[_SqliteQuery]:
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"the SQLite registry at {self.path} is not usable: {exc}; check NADG_REGISTRY"
            ) from exc
        try:
            yield _SqliteQuery(conn)
        except sqlite3.IntegrityError as exc:
            _rollback(conn)
            text = str(exc)
            if "UNIQUE" in text or "PRIMARY KEY" in text:
                raise UniqueViolation(text) from exc
            if "FOREIGN KEY" in text:
                raise ForeignKeyViolation(text) from exc
            raise StoreError(f"the registry refused the change: {text}") from exc
        except sqlite3.Error as exc:
            _rollback(conn)
            raise StoreUnavailable(f"SQLite error on {self.path}: {exc}") from exc
        except BaseException:
            _rollback(conn)
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:  # e.g. the disk is full: nothing was written
                _rollback(conn)
                raise StoreUnavailable(
                    f"SQLite could not commit to {self.path}: {exc}; check the disk under"
                    " NADG_REGISTRY") from exc

    def _json(self, value: Any) -> Any:
        return dumps(value)

    def _time(self, value: datetime) -> Any:
        return value.isoformat(timespec="microseconds")

    def close(self) -> None:
        """Close every connection this store opened."""
        self._closed = True
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                logger.warning("could not close an SQLite connection to %s", self.path)
