"""A pull worker's store client on Postgres (``DATABASE_URL``).

It connects as a login role that is a member of ``nadg_pull`` and may only execute the
``nadg_pull_*`` functions, each checking ``NADG_WORKER_CREDENTIAL``. One connection makes
the calls; a second one ``LISTEN``s on ``nadg_work`` so that an idle worker wakes as soon
as work is queued (see the triggers in database/schema.sql) instead of polling.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from database.backends.postgres import describe_dsn
from database.backends.rows import js, ts
from database.leases import CredentialRefused, Lease
from database.store import StoreError, StoreUnavailable

logger = logging.getLogger(__name__)

CHANNEL = "nadg_work"


class PostgresPullStore:
    """:class:`database.leases.PullStore` through psycopg."""

    long_polls = False

    def __init__(self, dsn: str, credential: str, *, timeout_s: float = 30.0) -> None:
        self._dsn, self._credential = dsn, credential
        self._where = describe_dsn(dsn)
        self._timeout = max(1, int(timeout_s))
        self._lock = threading.Lock()
        self._conn = self._connect()
        self._listen = self._connect()
        self._listen.execute(f"LISTEN {CHANNEL}")

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        try:
            return psycopg.connect(self._dsn, autocommit=True, row_factory=dict_row,
                                   prepare_threshold=None, connect_timeout=self._timeout)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot reach Postgres at {self._where}: {exc}; check"
                                   " DATABASE_URL") from exc

    def _call(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        with self._lock:
            try:
                if self._conn.closed:
                    self._conn = self._connect()
                return self._conn.execute(sql, tuple(params)).fetchall()
            except (errors.InvalidAuthorizationSpecification,
                    errors.InsufficientPrivilege) as exc:
                raise CredentialRefused(_first_line(exc)) from exc
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(f"lost Postgres at {self._where}: {_first_line(exc)}"
                                       ) from exc
            except psycopg.Error as exc:
                raise StoreError(f"Postgres refused the call: {_first_line(exc)}") from exc

    def hello(self, capabilities: Sequence[str], max_concurrency: int, version: str) -> int:
        """Register (or refresh) this worker as ``pull://NAME``; returns its worker id."""
        rows = self._call("SELECT nadg_pull_hello(%s, %s, %s, %s) AS id",
                          (self._credential, Jsonb(list(capabilities)), max_concurrency,
                           version))
        return int(rows[0]["id"])

    def claim(self, max_count: int, lease_s: float, kinds: Sequence[str] | None = None,
              wait_s: float = 0.0) -> list[Lease]:
        """Lease up to ``max_count`` claimable subtasks (``FOR UPDATE SKIP LOCKED``)."""
        rows = self._call("SELECT * FROM nadg_pull_claim(%s, %s, %s, %s, %s)",
                          (self._credential, max_count, lease_s,
                           list(kinds) if kinds is not None else None, wait_s))
        return [Lease(subtask_id=r["id"], task_id=r["task_id"], kind=r["kind"],
                      payload=dict(js(r["payload"]) or {}),
                      expires_at=ts(r["lease_expires_at"])) for r in rows]

    def extend(self, subtask_ids: Sequence[str], lease_s: float) -> list[str]:
        """Extend this worker's leases; returns the ids it still holds."""
        rows = self._call("SELECT * FROM nadg_pull_extend(%s, %s, %s) AS id",
                          (self._credential, list(subtask_ids), lease_s))
        return [str(r["id"]) for r in rows]

    def complete(self, subtask_id: str, status: str, result: dict[str, Any] | None,
                 error: str | None) -> bool:
        """Record the outcome of a subtask this worker holds (first completed wins)."""
        rows = self._call("SELECT nadg_pull_complete(%s, %s, %s, %s, %s) AS ok",
                          (self._credential, subtask_id, status,
                           Jsonb(result) if result is not None else None, error))
        return bool(rows[0]["ok"])

    def wait_for_work(self, timeout_s: float) -> bool:
        """Block until a ``nadg_work`` notification arrives or ``timeout_s`` passes."""
        try:
            for _ in self._listen.notifies(timeout=max(0.0, timeout_s), stop_after=1):
                return True
        except psycopg.OperationalError as exc:
            logger.warning("lost the LISTEN connection (%s); reconnecting", _first_line(exc))
            self._listen = self._connect()
            self._listen.execute(f"LISTEN {CHANNEL}")
        return False

    def close(self) -> None:
        """Close both connections."""
        for conn in (self._conn, self._listen):
            try:
                conn.close()
            except psycopg.Error:  # closing what the server already dropped
                pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
