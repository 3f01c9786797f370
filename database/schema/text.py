"""SQL text both renderers share: literals, CREATE TABLE blocks, indexes, headings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from database.schema.model import Check, Column, Index, Table

WIDTH = 92


def literal(value: int | float | str) -> str:
    """A number or a quoted text literal."""
    if isinstance(value, bool):  # a bool is an int; no column default is one today
        raise TypeError("boolean defaults are not supported; use 0 or 1")
    if isinstance(value, int | float):
        return repr(value)
    return "'" + value.replace("'", "''") + "'"


def section(title: str) -> str:
    """``-- Title ------`` up to :data:`WIDTH` characters."""
    head = f"-- {title} "
    return head + "-" * max(3, WIDTH - len(head)) + "\n"


def create_table(table: Table, columns: Sequence[Column], spell: Callable[[Column], str],
                 checks: Iterable[Check]) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with ``columns`` (aligned) and table constraints."""
    width = max(len(c.name) for c in columns)
    lines = [f"    {c.name.ljust(width)} {spell(c)}" for c in columns]
    lines += [_constraint(check) for check in checks]
    lines += [f"    UNIQUE ({', '.join(cols)})" for cols in table.unique]
    if table.primary_key:
        lines.append(f"    PRIMARY KEY ({', '.join(table.primary_key)})")
    return (f"CREATE TABLE IF NOT EXISTS {table.name} (\n" + ",\n".join(lines) + "\n);\n")


def _constraint(check: Check) -> str:
    line = f"    CONSTRAINT {check.name} CHECK ({check.expr})"
    if len(line) <= WIDTH:
        return line
    return f"    CONSTRAINT {check.name}\n        CHECK ({check.expr})"


def index(table: Table, ix: Index) -> str:
    """``CREATE [UNIQUE] INDEX IF NOT EXISTS name ON table (cols);``."""
    kind = "UNIQUE INDEX" if ix.unique else "INDEX"
    return f"CREATE {kind} IF NOT EXISTS {ix.name} ON {table.name} ({', '.join(ix.columns)});\n"
