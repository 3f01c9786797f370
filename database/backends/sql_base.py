"""The plumbing under the SQL Store: the driver hooks the worker, job and model mixins use.

A backend (SQLite, Postgres) subclasses :class:`database.backends.sql_common.SqlStore` and
supplies a transaction (:meth:`SqlBase._tx`) yielding a :class:`Query`, and how it passes
JSON and timestamps; the SQL itself is written once with ``?`` placeholders and the common
subset of both dialects (``RETURNING``, ``ON CONFLICT``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from database.models import utcnow
from database.store import StoreError


class Query(Protocol):
    """One open transaction: run SQL with ``?`` placeholders, rows come back as dicts."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run ``sql`` and return every row."""
        ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run ``sql`` and return the number of rows it changed."""
        ...

    def many(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        """Run ``sql`` once per parameter tuple (an iterable is consumed as it goes, so a
        generator of a large task's rows is never held whole)."""
        ...


class UniqueViolation(StoreError):
    """A driver's unique-constraint error, translated (internal to the SQL backends)."""


class ForeignKeyViolation(StoreError):
    """A driver's foreign-key error, translated (internal to the SQL backends)."""


def in_list(values: Sequence[Any]) -> str:
    """``(?, ?, ?)`` for an IN clause of ``len(values)`` items."""
    return "(" + ", ".join("?" for _ in values) + ")"


class SqlBase(ABC):
    """The driver hooks and dialect settings every SQL mixin relies on."""

    backend_name: str = "sql"
    #: Appended to the SELECT that starts a read-modify-write (row lock where supported).
    for_update: str = ""
    #: How a new task row gets its ordering number (``seq``).
    task_seq_sql: str = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM tasks)"

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Query]:
        """A transaction that commits on success and rolls back on error.

        Driver errors surface as StoreError subclasses; a unique violation as
        :class:`UniqueViolation`, a foreign key violation as :class:`ForeignKeyViolation`.
        """

    @abstractmethod
    def _json(self, value: Any) -> Any:
        """A JSON value as the driver should receive it."""

    @abstractmethod
    def _time(self, value: datetime) -> Any:
        """A timestamp as the driver should receive it."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def _now(self) -> Any:
        return self._time(utcnow())
