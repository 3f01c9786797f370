"""The vocabulary of the schema definition: tables, columns, checks, indexes.

It says what the store needs, not how a dialect spells it; the renderers
(:mod:`database.schema.postgres`, :mod:`database.schema.sqlite`) do the spelling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Type(Enum):
    """A column's type, independent of the dialect."""

    IDENTITY = "identity"  #: an integer the database numbers itself
    BIGINT = "bigint"
    INTEGER = "integer"
    FLOAT = "float"
    TEXT = "text"
    BOOL = "bool"
    JSON = "json"
    TIMESTAMP = "timestamp"  #: timezone-aware UTC


class Now(Enum):
    """The default "the time of the insert" (a sentinel, spelled per dialect)."""

    NOW = "now"


NOW = Now.NOW

#: A column default: a number, a text literal (JSON defaults are text too) or :data:`NOW`.
Default = int | float | str | Now


@dataclass(frozen=True)
class Ref:
    """A foreign key: ``REFERENCES table (column) ON DELETE on_delete``."""

    table: str
    column: str = "id"
    on_delete: str = "CASCADE"


@dataclass(frozen=True)
class Column:
    """One column.

    ``added`` marks a column that a table of an earlier release lacks: where tables are
    upgraded in place (Postgres) it is added by ``ALTER TABLE ... ADD COLUMN IF NOT
    EXISTS`` instead of being part of ``CREATE TABLE``.
    """

    name: str
    type: Type
    not_null: bool = False
    default: Default | None = None
    primary_key: bool = False
    unique: bool = False
    references: Ref | None = None
    added: bool = False


@dataclass(frozen=True)
class Check:
    """A named CHECK constraint; ``expr`` is SQL both dialects read alike."""

    name: str
    expr: str


@dataclass(frozen=True)
class Index:
    """An index; ``columns`` may carry a direction (``"at DESC"``).

    ``only`` limits it to some dialects (e.g. a guard needed only where an older table
    is upgraded in place).
    """

    name: str
    columns: tuple[str, ...]
    unique: bool = False
    only: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    """One table with its constraints and indexes.

    ``upgrades_in_place`` marks a table that may already exist in an older shape (the
    original NADG ``worker_nodes``): its checks are added afterwards, once, ``NOT VALID``,
    so old rows are not re-checked and the upgrade never fails on them.
    """

    name: str
    columns: tuple[Column, ...]
    comment: str = ""
    checks: tuple[Check, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    primary_key: tuple[str, ...] = ()
    indexes: tuple[Index, ...] = ()
    upgrades_in_place: bool = False
    column_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_names", tuple(c.name for c in self.columns))
