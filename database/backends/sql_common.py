"""The Store implemented once in SQL, shared by the SQLite and Postgres backends.

:class:`SqlStore` composes four mixins, one per part of the Store protocol:

* :mod:`database.backends.sql_workers` -- the worker registry (:class:`SqlWorkers`);
* :mod:`database.backends.sql_jobs` -- tasks and subtasks (:class:`SqlJobs`);
* :mod:`database.backends.sql_batch` -- batch writes, windows, counts (:class:`SqlBatch`);
* :mod:`database.backends.sql_models` -- models and deployments (:class:`SqlModels`).

All of them stand on :class:`database.backends.sql_base.SqlBase`: a backend subclass
supplies a transaction (``_tx``) yielding a :class:`Query`, and how it passes JSON and
timestamps; the SQL itself is written once with ``?`` placeholders and the common subset
of both dialects (``RETURNING``, ``ON CONFLICT``).
"""

from __future__ import annotations

from database.backends.common import PING_RETENTION, chunks, dumps, norm_url
from database.backends.sql_base import (
    ForeignKeyViolation,
    Query,
    SqlBase,
    UniqueViolation,
    in_list,
)
from database.backends.sql_batch import SqlBatch
from database.backends.sql_jobs import UNFINISHED_TASK, SqlJobs
from database.backends.sql_models import SqlModels
from database.backends.sql_workers import SqlWorkers

__all__ = [
    "PING_RETENTION",
    "UNFINISHED_TASK",
    "ForeignKeyViolation",
    "Query",
    "SqlBase",
    "SqlBatch",
    "SqlJobs",
    "SqlModels",
    "SqlStore",
    "SqlWorkers",
    "UniqueViolation",
    "chunks",
    "dumps",
    "in_list",
    "norm_url",
]


class SqlStore(SqlWorkers, SqlJobs, SqlBatch, SqlModels):
    """Every Store method, in SQL; subclasses bind it to a driver."""

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
