"""Aggregation: the results of a task back in input order, as one table.

Per operation: ``classify`` → a label (and its score) per row plus label counts;
``embed`` → a matrix (saved as ``.npy``) and its dimension per row; ``generate`` → the text
per row; ``python`` / ``noop`` → one output per subtask. Rows of failed shards stay in the
table with their error, and :attr:`TaskResult.failures` lists them exactly.
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

from database.models import SubtaskRecord, SubtaskStatus, TaskDetail

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FailedPart:
    """A subtask without a result: its position, the input rows it covered, and why."""

    idx: int
    rows: tuple[int, ...]
    reason: str


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
    operation = str(detail.task.plan.get("operation", ""))
    subs = sorted(detail.subtasks, key=lambda s: s.idx)
    failures = [FailedPart(s.idx, tuple(s.payload.get("rows", [s.idx])),
                           s.error or s.status.value)
                for s in subs if s.status is not SubtaskStatus.COMPLETED]
    result = TaskResult(task_id=detail.task.id, operation=operation,
                        status=detail.task.status.value, table=pd.DataFrame(), failures=failures)
    if operation in ("classify", "embed", "generate"):
        _per_row(result, subs, operation)
    else:
        _per_subtask(result, subs)
    return result


def _per_row(result: TaskResult, subs: list[SubtaskRecord], operation: str) -> None:
    rows: list[dict[str, Any]] = []
    vectors: dict[int, list[float]] = {}
    dim = 0
    for sub in subs:
        texts = sub.payload.get("texts") or sub.payload.get("prompts") or []
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
    for sub in subs:
        output = _output(sub)
        entry: dict[str, Any] = {"idx": sub.idx, "input": sub.payload.get(
            "input", sub.payload.get("echo"))}
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
