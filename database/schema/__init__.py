"""The schema of the registry and job store, defined once, spelled per dialect.

:mod:`database.schema.definition` says which tables, columns, checks and indexes the
store needs; :mod:`database.schema.postgres` and :mod:`database.schema.sqlite` spell them.
The backends apply :func:`render` when they open. ``database/schema.sql`` is the Postgres
rendering committed for people who paste it into the Supabase SQL editor or run it with
psql; a test keeps it equal to the generator's output::

    python -m database.schema --dialect postgres > database/schema.sql
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from database.schema.definition import TABLES

Dialect = Literal["postgres", "sqlite"]
DIALECTS: tuple[Dialect, ...] = ("postgres", "sqlite")

#: The committed Postgres rendering, relative to the repository root.
SCHEMA_FILE = "database/schema.sql"


@cache
def render(dialect: Dialect) -> str:
    """The DDL of every table (and, on Postgres, the RPC functions) in ``dialect``."""
    if dialect == "postgres":
        from database.schema import postgres

        return postgres.render(TABLES)
    if dialect == "sqlite":
        from database.schema import sqlite

        return sqlite.render(TABLES)
    raise ValueError(f"unknown dialect {dialect!r}; use one of {', '.join(DIALECTS)}")


def required_columns() -> dict[str, tuple[str, ...]]:
    """Every table the store uses and its columns."""
    return {t.name: t.column_names for t in TABLES}


def missing_columns(found: dict[str, set[str]]) -> list[str]:
    """``table.column`` (or ``table`` when the whole table is absent) for each part of the
    schema not in ``found`` (a table name to its column names)."""
    missing: list[str] = []
    for table, columns in required_columns().items():
        if table not in found:
            missing.append(table)
            continue
        missing += [f"{table}.{c}" for c in columns if c not in found[table]]
    return missing


__all__ = ["DIALECTS", "SCHEMA_FILE", "Dialect", "missing_columns", "render",
           "required_columns"]
