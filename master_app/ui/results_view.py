"""What a finished (or partly finished) task produced: the merged answer, the table (beside
the input's own columns when the input is at hand), per-kind views, failures, downloads.
Shared by the Run a task and History pages."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from database.store import StoreError
from master_app.aggregate import TaskResult
from master_app.ui import jobs_api
from master_app.ui.resources import get_store

logger = logging.getLogger(__name__)

#: Rows shown in the result table (the downloads hold all of them).
MAX_TABLE_ROWS = 5_000
#: What the grid adds to a row, in this order, after the input's own columns.
RESULT_COLUMNS = ("label", "score", "output", "dim", "error")


def with_input(table: pd.DataFrame, frame: pd.DataFrame | None) -> pd.DataFrame:
    """A per-row result table shown as people expect it: the input's own columns (its
    ids, its original labels) first, then what the grid added; a result column whose
    name the input already uses is called ``predicted <name>``.

    Without the input (or for results that are not per row) the table is returned with
    its ``row`` numbers counted from 1, as a spreadsheet counts the input's lines.
    """
    if "row" not in table.columns:
        return table
    if frame is None or table.empty or int(table["row"].max()) >= len(frame):
        shown = table.copy()
        shown["row"] = shown["row"].astype(int) + 1
        return shown
    rows = table["row"].astype(int).to_numpy()
    merged = frame.iloc[rows].reset_index(drop=True)
    for column in RESULT_COLUMNS:
        if column in table.columns:
            name = f"predicted {column}" if column in merged.columns else column
            merged[name] = table[column].to_numpy()
    return merged


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    clean = frame.astype(object).where(pd.notna(frame), None)
    return [{str(k): v for k, v in r.items()} for r in clean.to_dict("records")]


def label_counts_ui(counts: dict[str, int]) -> None:
    """Label counts as a bar chart."""
    st.markdown("**Label counts**")
    frame = pd.DataFrame({"label": list(counts), "rows": list(counts.values())})
    st.bar_chart(frame, x="label", y="rows", horizontal=True)


def per_kind_ui(result: TaskResult) -> None:
    """The view that suits the operation: counts, generated text, python outputs, matrix."""
    table = result.table
    if result.label_counts:
        label_counts_ui(result.label_counts)
    if result.operation == "generate" and "output" in table.columns:
        st.markdown("**Generated text per row**")
        for rec in _records(table.head(20)):
            with st.container(border=True):
                st.caption(f"row {int(rec['row']) + 1}: {str(rec.get('text') or '')[:200]}")
                st.write(rec.get("output") if rec.get("output") is not None
                         else f"failed: {rec.get('error')}")
    if result.matrix is not None:
        st.caption(f"Embeddings: a {result.matrix.shape[0]} × {result.matrix.shape[1]} matrix "
                   "(download it as .npy below).")


def downloads_ui(result: TaskResult, key: str, table: pd.DataFrame | None = None) -> None:
    """CSV and JSON of the table (``table``: as shown, with the input's columns); .npy of
    the embeddings when there are some."""
    table = result.table if table is None else table
    cols = st.columns(3)
    cols[0].download_button(
        "Download CSV", table.to_csv(index=False).encode("utf-8"),
        file_name=f"{result.task_id}.csv", mime="text/csv", key=f"{key}_csv",
    )
    body = json.dumps({**result.summary(), "table": _records(table)}, default=str)
    cols[1].download_button(
        "Download JSON", body.encode("utf-8"), file_name=f"{result.task_id}.json",
        mime="application/json", key=f"{key}_json",
    )
    if result.matrix is not None:
        buffer = io.BytesIO()
        np.save(buffer, result.matrix)
        cols[2].download_button(
            "Download embeddings (.npy)", buffer.getvalue(), file_name=f"{result.task_id}.npy",
            mime="application/octet-stream", key=f"{key}_npy",
        )


def failures_ui(failures: list[dict[str, Any]]) -> None:
    """What failed and why."""
    if failures:
        st.markdown(f"**{len(failures)} subtask(s) without a result**")
        st.dataframe(pd.DataFrame(failures), hide_index=True, placeholder="—")


def answer_ui(result: TaskResult) -> None:
    """The plan's one merged answer (its reduce step), or why there is none."""
    answer = result.answer
    if answer is None or answer.kind == "table":
        return  # the table below is the answer
    st.markdown("**Answer**")
    if answer.error:
        st.error(f"No merged answer: {answer.error}")
    elif answer.text:
        with st.container(border=True):
            st.markdown(answer.text)


def counts_text(failures: list[dict[str, Any]], completed: int, total: int) -> str:
    """``"7 of 10 subtasks completed, 3 cancelled"``: the subtasks without a result by
    their status (cancelled ones are not failed ones)."""
    text = f"{completed} of {total} subtasks completed"
    by_status: dict[str, int] = {}
    for failure in failures:
        by_status[str(failure["status"])] = by_status.get(str(failure["status"]), 0) + 1
    for status, count in sorted(by_status.items()):
        text += f", {count} {status}"
    return text


def results_ui(task_id: str, key: str, detail: Any = None, result: TaskResult | None = None,
               frame: pd.DataFrame | None = None) -> None:
    """Everything a task produced so far: ``detail`` when the caller has the finished task
    (a run hands it on), else read from the store; ``result`` when the run merged it
    (with its answer); ``frame``, the input table, shown beside the results."""
    try:
        view = jobs_api.task_view(task_id, get_store(), detail)
    except StoreError as exc:
        st.error(f"The results of {task_id} cannot be read: {exc}")
        return
    task = view.detail.task
    counts = counts_text(view.failures, view.completed, view.total)
    if task.status.value == "completed":
        st.success(f"Task `{task_id}` completed: {counts}.")
    elif task.status.finished:
        reason = "" if task.error in (None, "cancelled") else f" {task.error}"
        st.warning(f"Task `{task_id}` {task.status.value}: {counts}.{reason}")
    else:
        st.info(f"Task `{task_id}` is {task.status.value}: {counts}.")
    result = result if result is not None else view.result
    answer_ui(result)
    per_kind_ui(result)
    if not result.table.empty:
        table = with_input(result.table, frame if frame is not None
                           else jobs_api.input_of(task_id))
        heading = ("Python outputs per subtask" if result.operation == "python"
                   else "Results")
        st.markdown(f"**{heading}** ({len(table):,} rows)")
        st.dataframe(table.head(MAX_TABLE_ROWS), hide_index=True, placeholder="—")
        downloads_ui(result, key, table)
    failures_ui(view.failures)
