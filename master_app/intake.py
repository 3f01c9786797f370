"""Data intake: CSV, TXT (one item a line) and JSONL into a :class:`Dataset`.

The planner never sees the data itself, only :meth:`Dataset.summary` (columns, types, row
count, a few sample rows). Every problem is a :class:`DataError` whose message says what
was wrong and what to do.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

#: Default limits (the settings may pass smaller or larger ones).
MAX_BYTES = 50 * 1024 * 1024
MAX_ROWS = 200_000
SAMPLE_ROWS = 3
SAMPLE_CHARS = 200
TEXT_COLUMN = "text"


class DataError(ValueError):
    """The data cannot be used; the message says why and how to fix it."""


@dataclass(frozen=True)
class DataSummary:
    """What the planner may see of the data: its shape, never its whole content."""

    filename: str
    format: str
    row_count: int
    columns: list[str]
    dtypes: dict[str, str]
    sample_rows: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (what goes into a planner prompt and the plan cache key)."""
        return {
            "filename": self.filename,
            "format": self.format,
            "row_count": self.row_count,
            "columns": self.columns,
            "dtypes": self.dtypes,
            "sample_rows": self.sample_rows,
        }


@dataclass
class Dataset:
    """Loaded rows as a DataFrame plus where they came from."""

    frame: pd.DataFrame
    filename: str
    format: str

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def columns(self) -> list[str]:
        """Column names in file order."""
        return [str(c) for c in self.frame.columns]

    def default_text_column(self) -> str | None:
        """``text`` if present, else the first column of string type, else None."""
        if TEXT_COLUMN in self.columns:
            return TEXT_COLUMN
        for col in self.columns:
            if self.frame[col].dtype == object or str(self.frame[col].dtype).startswith("str"):
                return col
        return None

    def texts(self, column: str) -> list[str]:
        """The values of ``column`` as strings; DataError if the column is missing."""
        if column not in self.columns:
            raise DataError(
                f"column {column!r} is not in {self.filename}; it has {self.columns}. "
                "Name one of those columns in the command or rename the column."
            )
        return ["" if pd.isna(v) else str(v) for v in self.frame[column].tolist()]

    def records(self) -> list[dict[str, Any]]:
        """Rows as JSON-friendly dicts (NaN becomes None)."""
        clean = self.frame.astype(object).where(pd.notna(self.frame), None)
        return [{str(k): _plain(v) for k, v in row.items()} for row in clean.to_dict("records")]

    def summary(self) -> DataSummary:
        """Columns, types, row count and a few (truncated) sample rows."""
        samples = []
        for row in self.records()[:SAMPLE_ROWS]:
            samples.append({k: _truncate(v) for k, v in row.items()})
        return DataSummary(
            filename=self.filename,
            format=self.format,
            row_count=len(self.frame),
            columns=self.columns,
            dtypes={str(c): str(t) for c, t in self.frame.dtypes.items()},
            sample_rows=samples,
        )


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value


def _truncate(value: Any) -> Any:
    if isinstance(value, str) and len(value) > SAMPLE_CHARS:
        return value[:SAMPLE_CHARS] + "…"
    return value


def load_dataset(
    source: str | Path | bytes,
    filename: str | None = None,
    *,
    max_bytes: int = MAX_BYTES,
    max_rows: int = MAX_ROWS,
) -> Dataset:
    """Load CSV, TXT or JSONL from a path or from bytes (an upload).

    The format comes from the file name's extension (``.csv``, ``.txt``, ``.jsonl`` /
    ``.ndjson``). Raises :class:`DataError` for a missing or empty file, a file over
    ``max_bytes`` or ``max_rows``, text that is not UTF-8, or rows that do not parse.
    """
    raw, name = _read(source, filename, max_bytes)
    fmt = _format_of(name)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{name} is not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
            "save it as UTF-8 and try again."
        ) from exc
    if not text.strip():
        raise DataError(f"{name} is empty; give a file with at least one row.")
    if fmt == "csv":
        frame = _parse_csv(text, name)
    elif fmt == "txt":
        lines = [line.strip() for line in text.splitlines()]
        frame = pd.DataFrame({TEXT_COLUMN: [line for line in lines if line]}, dtype=object)
    else:
        frame = _parse_jsonl(text, name)
    if len(frame) == 0:
        raise DataError(f"{name} has a header but no rows; add at least one row.")
    if len(frame) > max_rows:
        raise DataError(
            f"{name} has {len(frame):,} rows, over the limit of {max_rows:,}; "
            "split it or raise NADG_MAX_ROWS."
        )
    logger.info("loaded %s: %d rows, columns %s", name, len(frame), list(frame.columns))
    return Dataset(frame=frame, filename=name, format=fmt)


def _read(source: str | Path | bytes, filename: str | None, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, bytes):
        if not filename:
            raise DataError("an upload needs its file name (to tell CSV, TXT and JSONL apart).")
        raw, name = source, filename
    else:
        path = Path(source)
        name = filename or path.name
        if not path.is_file():
            raise DataError(f"no such file: {path}; check the path.")
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(
                f"{name} is {size:,} bytes, over the limit of {max_bytes:,}; "
                "split it or raise NADG_MAX_UPLOAD_BYTES."
            )
        raw = path.read_bytes()
    if len(raw) > max_bytes:
        raise DataError(
            f"{name} is {len(raw):,} bytes, over the limit of {max_bytes:,}; "
            "split it or raise NADG_MAX_UPLOAD_BYTES."
        )
    return raw, name


def _format_of(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".txt":
        return "txt"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise DataError(
        f"{name}: unknown file type {suffix or '(none)'!r}; use .csv, .txt (one item a line) "
        "or .jsonl (one JSON object a line)."
    )


def _parse_csv(text: str, name: str) -> pd.DataFrame:
    try:
        # index_col=False: never take surplus leading fields as an index. Without it, rows
        # with more fields than the header (an unquoted comma in every text) were read
        # shifted, with the wrong values under each column and no error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.StringIO(text), dtype=object, keep_default_na=False,
                                skip_blank_lines=True, index_col=False)
    except pd.errors.ParserWarning as exc:
        raise DataError(f"{name}: {_surplus_fields(text)}; quote fields that contain commas "
                        '("like, this") or remove the extra separators.') from exc
    except (pd.errors.ParserError, csv.Error) as exc:
        raise DataError(f"{name} is not valid CSV: {str(exc).strip()}") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{name} is empty; give a file with at least one row.") from exc
    unnamed = [c for c in frame.columns if str(c).startswith("Unnamed:")]
    if unnamed:
        raise DataError(f"{name}: the header row has empty column names ({unnamed}); "
                        "give every column a name.")
    return frame


def _surplus_fields(text: str) -> str:
    """Which line has more fields than the header (for the error message)."""
    rows = ((n, row) for n, row in enumerate(csv.reader(io.StringIO(text)), start=1) if row)
    header = next(rows, (1, []))[1]
    for lineno, row in rows:
        if len(row) > len(header):
            return (f"line {lineno} has {len(row)} fields but the header has {len(header)} "
                    f"({', '.join(header)})")
    return "some rows have more fields than the header"


def _parse_jsonl(text: str, name: str) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name} line {lineno} is not JSON: {exc.msg}") from exc
        if not isinstance(value, dict):
            value = {"value": value}
        rows.append(value)
    return pd.DataFrame.from_records(rows)
