"""Aggregation: the results of a task back in input order, as one table.

Per operation: ``classify`` → a label (and its score) per row plus label counts;
``embed`` → a matrix (saved as ``.npy``) and its dimension per row; ``generate`` → the text
per row; ``python`` / ``noop`` → one output per subtask; a plan that lists its subtasks →
one row per subtask (kind, description, output). Rows of failed shards stay in the table
with their error, and :attr:`TaskResult.failures` lists them exactly.

:func:`values_of` and :func:`texts_of` read the results in order for the reduce step
(:mod:`master_app.reduce`), whose one merged :class:`Answer` joins the result.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from database.blobs import resolve_records
from database.models import SubtaskRecord, SubtaskStatus, TaskDetail

logger = logging.getLogger(__name__)

#: ``TaskResult.operation`` of a plan that lists its subtasks.
SUBTASKS = "subtasks"


@dataclass(frozen=True, slots=True)
class FailedPart:
    """A subtask without a result: its position, the input rows it covered, and why."""

    idx: int
    rows: tuple[int, ...]
    reason: str


@dataclass
class Answer:
    """The one merged answer of a task, made by its reduce step.

    ``text`` is the answer as text (the joined outputs, the synthesis, the table as CSV,
    the reducer's result); ``value`` the python reducer's ``RESULT``; ``error`` says why
    there is no answer (the results table is still there).
    """

    kind: str
    text: str | None = None
    value: Any = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the reduce step made an answer."""
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (part of :meth:`TaskResult.summary`)."""
        return {"kind": self.kind, "text": self.text, "value": self.value,
                "error": self.error, **({"detail": self.detail} if self.detail else {})}


@dataclass
class TaskResult:
    """The merged result of a task."""

    task_id: str
    operation: str
    status: str
    table: pd.DataFrame
    failures: list[FailedPart] = field(default_factory=list)
    label_counts: dict[str, int] | None = None
    matrix: np.ndarray | None = None
    answer: Answer | None = None
    #: Each subtask's value as the worker sent it (python/noop/listed subtasks), free of
    #: the table's dtype changes (an int column with a gap turns float in pandas).
    outputs: list[Any] | None = None

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary (what ``--json`` prints)."""
        out: dict[str, Any] = {
            "task_id": self.task_id, "operation": self.operation, "status": self.status,
            "rows": len(self.table),
            "failures": [{"idx": f.idx, "rows": list(f.rows), "reason": f.reason}
                         for f in self.failures]}
        if self.label_counts is not None:
            out["label_counts"] = self.label_counts
        if self.matrix is not None:
            out["matrix_shape"] = list(self.matrix.shape)
        if self.answer is not None:
            out["answer"] = self.answer.as_dict()
        return out

    def save(self, path: str | Path) -> list[Path]:
        """Write the table (``.csv``, ``.json`` or ``.jsonl`` by extension; ``.npy`` for
        an embed matrix, with the table beside it as CSV). Returns the files written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        written = []
        if path.suffix == ".npy":
            if self.matrix is None:
                raise ValueError(f"{self.operation} has no matrix to save; use .csv or .json")
            np.save(path, self.matrix)
            written.append(path)
            path = path.with_suffix(".csv")
        elif self.matrix is not None:
            np.save(path.with_suffix(".npy"), self.matrix)
            written.append(path.with_suffix(".npy"))
        if path.suffix == ".json":
            path.write_text(json.dumps({**self.summary(), "table": _records(self.table)},
                                       default=str, indent=1), "utf-8")
        elif path.suffix == ".jsonl":
            path.write_text("".join(json.dumps(r, default=str) + "\n"
                                    for r in _records(self.table)), "utf-8")
        else:
            self.table.to_csv(path, index=False)
        written.append(path)
        return written


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    clean = frame.astype(object).where(pd.notna(frame), None)
    return [{str(k): v for k, v in r.items()} for r in clean.to_dict("records")]


def _output(sub: SubtaskRecord) -> dict[str, Any] | None:
    if sub.status is not SubtaskStatus.COMPLETED or not sub.result:
        return None
    output = sub.result.get("output")
    return output if isinstance(output, dict) else None


def aggregate(detail: TaskDetail) -> TaskResult:
    """Merge the stored results of a task (in ``idx`` order) into a :class:`TaskResult`."""
    operation = str(detail.task.plan.get("operation") or SUBTASKS)
    # outputs kept in the object store are read back (and their sha256 checked) first
    subs = resolve_records(sorted(detail.subtasks, key=lambda s: s.idx))
    failures = [FailedPart(s.idx, tuple(s.payload.get("rows", [s.idx])),
                           s.error or s.status.value)
                for s in subs if s.status is not SubtaskStatus.COMPLETED]
    result = TaskResult(task_id=detail.task.id, operation=operation,
                        status=detail.task.status.value, table=pd.DataFrame(), failures=failures)
    if operation in ("classify", "embed", "generate"):
        _per_row(result, subs, operation)
    elif operation == SUBTASKS:
        _per_step(result, subs, detail.task.plan.get("subtasks") or [])
    else:
        _per_subtask(result, subs)
    return result


def _per_row(result: TaskResult, subs: list[SubtaskRecord], operation: str) -> None:
    rows: list[dict[str, Any]] = []
    vectors: dict[int, list[float]] = {}
    dim = 0
    for sub in subs:
        texts = (sub.payload.get("row_texts") or sub.payload.get("texts")
                 or sub.payload.get("prompts") or [])
        indices = sub.payload.get("rows") or list(range(len(texts)))
        output = _output(sub)
        for j, row in enumerate(indices):
            entry: dict[str, Any] = {"row": row, "text": texts[j] if j < len(texts) else None}
            try:
                if output is None:
                    entry["error"] = sub.error or sub.status.value
                elif operation == "classify":
                    entry["label"] = output["labels"][j]
                    scores = output.get("scores")
                    if scores:
                        entry["score"] = float(max(scores[j]))
                elif operation == "embed":
                    vectors[row] = [float(x) for x in output["embeddings"][j]]
                    dim = len(vectors[row])
                    entry["dim"] = dim
                else:
                    entry["output"] = output["completions"][j]
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                entry["error"] = f"malformed {operation} output: {type(exc).__name__}: {exc}"
            rows.append(entry)
    table = pd.DataFrame(rows).sort_values("row", kind="stable").reset_index(drop=True)
    if "error" not in table.columns:
        table["error"] = None
    result.table = table
    if operation == "classify" and "label" in table.columns:
        counts = Counter(str(v) for v in table["label"].dropna())
        result.label_counts = dict(counts.most_common())
    if operation == "embed":
        n = int(table["row"].max()) + 1 if len(table) else 0
        matrix = np.full((n, dim), np.nan, dtype=np.float32)
        for row, vec in vectors.items():
            matrix[row] = vec
        result.matrix = matrix


def _per_subtask(result: TaskResult, subs: list[SubtaskRecord]) -> None:
    rows = []
    raw: list[Any] = []
    for sub in subs:
        output = _output(sub)
        entry: dict[str, Any] = {"idx": sub.idx, "input": sub.payload.get(
            "input", sub.payload.get("echo"))}
        raw.append(None if output is None else _step_output(sub.kind, output))
        if output is None:
            entry.update(output=None, error=sub.error or sub.status.value)
        elif "result" in output or "exit_code" in output:
            entry.update(output=output.get("result"), exit_code=output.get("exit_code"),
                         stdout=output.get("stdout"),
                         error=(output.get("stderr") or None) if output.get("exit_code") else None)
        else:
            entry.update(output=output.get("echo", output), error=None)
        rows.append(entry)
    result.table = pd.DataFrame(rows)
    result.outputs = raw


def _step_output(kind: str, output: dict[str, Any]) -> Any:
    """The one value a subtask of ``kind`` produced."""
    if kind == "python":
        if output.get("exit_code"):
            return None
        result = output.get("result")
        return result if result is not None else output.get("stdout")
    if kind == "generate":
        completions = output.get("completions") or [None]
        return completions[0]
    if kind == "classify":
        return output.get("labels")
    if kind == "embed":
        vectors = output.get("embeddings") or []
        return f"{len(vectors)} vectors of {len(vectors[0]) if vectors else 0} dimensions"
    return output.get("echo", output)


def _per_step(result: TaskResult, subs: list[SubtaskRecord], steps: list[Any]) -> None:
    rows = []
    raw: list[Any] = []
    for sub in subs:
        step = steps[sub.idx] if sub.idx < len(steps) and isinstance(steps[sub.idx], dict) else {}
        output = _output(sub)
        entry: dict[str, Any] = {"idx": sub.idx, "kind": sub.kind,
                                 "description": step.get("description", "")}
        if output is None:
            raw.append(None)
            entry.update(output=None, error=sub.error or sub.status.value)
        else:
            failed = sub.kind == "python" and output.get("exit_code")
            raw.append(_step_output(sub.kind, output))
            entry.update(output=raw[-1],
                         error=(output.get("stderr") or f"exit code {output.get('exit_code')}")
                         if failed else None)
        rows.append(entry)
    result.table = pd.DataFrame(rows, columns=["idx", "kind", "description", "output", "error"])
    result.outputs = raw


def values_of(result: TaskResult) -> list[Any]:
    """Each row's or subtask's result, in order (``None`` where it failed).

    A python result is its ``RESULT`` (its stdout when it set none); generate, its
    completion; classify, its label; embed, its dimension.
    """
    if result.outputs is not None:
        return [_plain(v) for v in result.outputs]
    table = result.table
    if table.empty:
        return []
    column = "label" if result.operation == "classify" else (
        "dim" if result.operation == "embed" else "output")
    if column not in table.columns:
        return [None] * len(table)
    values = [None if _missing(v) else v for v in table[column].astype(object).tolist()]
    if "stdout" in table.columns:
        stdouts = table["stdout"].astype(object).tolist()
        values = [s if v is None and isinstance(s, str) and s else v
                  for v, s in zip(values, stdouts, strict=True)]
    return [_plain(v) for v in values]


def texts_of(result: TaskResult) -> list[str]:
    """:func:`values_of` as text, failed parts left out (what concat and synthesis use)."""
    out = []
    for value in values_of(result):
        if value is None:
            continue
        out.append(value.strip() if isinstance(value, str)
                   else json.dumps(value, default=str, ensure_ascii=False))
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _plain(value: Any) -> Any:
    """numpy scalars as Python values (JSON-serialisable for a reducer's INPUT)."""
    if isinstance(value, np.generic):
        return value.item()
    return value
