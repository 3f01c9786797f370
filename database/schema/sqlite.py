"""The SQLite spelling of the schema (the embedded default backend).

Plain ``CREATE TABLE IF NOT EXISTS`` with every column. Timestamps are ISO 8601 UTC text
with microseconds (what the backend writes, so text order is time order); JSON columns
hold JSON text; booleans are 0/1.
"""

from __future__ import annotations

from database.schema.model import Column, Default, Now, Table, Type
from database.schema.text import create_table, index, literal

DIALECT = "sqlite"

HEADER = """\
-- NEXUS Grid registry and job store, SQLite flavour (the embedded default backend).
-- GENERATED from database/schema/definition.py (python -m database.schema --dialect sqlite).
-- Timestamps are ISO 8601 UTC text with microseconds; JSON columns hold JSON text.
"""

TYPES = {
    Type.IDENTITY: "INTEGER",
    Type.BIGINT: "INTEGER",
    Type.INTEGER: "INTEGER",
    Type.FLOAT: "REAL",
    Type.TEXT: "TEXT",
    Type.BOOL: "INTEGER",
    Type.JSON: "TEXT",
    Type.TIMESTAMP: "TEXT",
}

#: The time of the insert, spelled as the backend writes times (``isoformat`` with
#: microseconds and ``+00:00``); SQLite's ``%f`` gives milliseconds.
NOW_SQL = "(strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))"


def _default(value: Default) -> str:
    return NOW_SQL if isinstance(value, Now) else literal(value)


def column_sql(column: Column) -> str:
    """``TYPE [PRIMARY KEY AUTOINCREMENT] [NOT NULL] [DEFAULT x] [UNIQUE] [REFERENCES]``."""
    parts = [TYPES[column.type]]
    if column.primary_key:
        parts.append("PRIMARY KEY AUTOINCREMENT" if column.type is Type.IDENTITY
                     else "PRIMARY KEY")
    # an identity column that is not the key is numbered by the INSERT: never NULL
    if column.not_null or (column.type is Type.IDENTITY and not column.primary_key):
        parts.append("NOT NULL")
    if column.default is not None:
        parts.append(f"DEFAULT {_default(column.default)}")
    if column.unique:
        parts.append("UNIQUE")
    if column.references is not None:
        ref = column.references
        parts.append(f"REFERENCES {ref.table} ({ref.column}) ON DELETE {ref.on_delete}")
    return " ".join(parts)


def render(tables: tuple[Table, ...]) -> str:
    """The whole SQLite schema script (for ``executescript``)."""
    parts = [HEADER]
    for table in tables:
        parts.append("\n" + create_table(table, table.columns, column_sql, table.checks))
        parts += [index(table, ix) for ix in table.indexes if not ix.only or DIALECT in ix.only]
    return "".join(parts)
