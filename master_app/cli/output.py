"""What ``run`` and ``resume`` print on stdout: the result table, or JSON for machines."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from master_app.service import TaskOutcome, TaskResult


def save_result(result: TaskResult, out: Path | None) -> tuple[list[str], str | None]:
    """Write the table to ``out``; returns the files written and a one-line error, if any."""
    if out is None:
        return [], None
    try:
        return [str(p) for p in result.save(out)], None
    except OSError as exc:
        return [], f"could not write {out}: {exc.strerror or exc}; give a writable path."


def result_json(result: TaskResult, outcome: TaskOutcome, files: list[str]) -> dict[str, Any]:
    """The ``--json`` document of a run."""
    return {**result.summary(), "completed": outcome.completed, "total": outcome.total,
            "error": outcome.error, "files": files,
            "table": json.loads(result.table.to_json(orient="records"))}


def print_result(result: TaskResult, outcome: TaskOutcome, files: list[str],
                 as_json: bool) -> None:
    """The result on stdout: JSON, or the table with label counts and the status line."""
    if as_json:
        sys.stdout.write(json.dumps(result_json(result, outcome, files), default=str) + "\n")
        return
    table = result.table
    with_cols = [c for c in table.columns if c != "error" or table["error"].notna().any()]
    sys.stdout.write(table[with_cols].to_string(index=False, max_rows=60,
                                                max_colwidth=60) + "\n")
    if result.label_counts:
        sys.stdout.write("label counts: " + ", ".join(
            f"{k}={v}" for k, v in result.label_counts.items()) + "\n")
    answer = result.answer
    if answer is not None and answer.ok and answer.kind != "table":  # a table is shown above
        sys.stdout.write(f"answer ({answer.kind}):\n{answer.text or ''}\n")
    sys.stdout.write(f"task {outcome.task_id}: {outcome.status.value} "
                     f"({outcome.completed}/{outcome.total} subtasks)\n")
    for path in files:
        sys.stdout.write(f"wrote {path}\n")


def print_resumed(outcome: TaskOutcome, result: TaskResult | None, as_json: bool) -> None:
    """One line per resumed task (JSON with ``--json``)."""
    if as_json:
        summary = result.summary() if result is not None else {
            "task_id": outcome.task_id, "status": outcome.status.value, "error": outcome.error}
        sys.stdout.write(json.dumps({**summary, "completed": outcome.completed,
                                     "total": outcome.total}, default=str) + "\n")
        return
    sys.stdout.write(f"task {outcome.task_id}: {outcome.status.value} "
                     f"({outcome.completed}/{outcome.total})"
                     + (f": {outcome.error}" if outcome.error else "") + "\n")
