"""What a finished (or partly finished) task produced: table, per-kind views, failures,
downloads. Shared by the Run a task and History pages."""

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
                st.caption(f"row {rec['row']}: {str(rec.get('text') or '')[:200]}")
                st.write(rec.get("output") if rec.get("output") is not None
                         else f"failed: {rec.get('error')}")
    if result.matrix is not None:
        st.caption(f"Embeddings: a {result.matrix.shape[0]} × {result.matrix.shape[1]} matrix "
                   "(download it as .npy below).")


def downloads_ui(result: TaskResult, key: str) -> None:
    """CSV and JSON of the table; .npy of the embeddings when there are some."""
    cols = st.columns(3)
    cols[0].download_button(
        "Download CSV", result.table.to_csv(index=False).encode("utf-8"),
        file_name=f"{result.task_id}.csv", mime="text/csv", key=f"{key}_csv",
    )
    body = json.dumps({**result.summary(), "table": _records(result.table)}, default=str)
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
        st.dataframe(pd.DataFrame(failures), hide_index=True)


def results_ui(task_id: str, key: str) -> None:
    """Everything a task produced so far, read from the store."""
    try:
        view = jobs_api.task_view(task_id, get_store())
    except StoreError as exc:
        st.error(f"The results of {task_id} cannot be read: {exc}")
        return
    task = view.detail.task
    counts = f"{view.completed} of {view.total} subtasks completed"
    if view.failures:
        counts += f", {len(view.failures)} without a result"
    if task.status.value == "completed":
        st.success(f"Task `{task_id}` completed: {counts}.")
    elif task.status.finished:
        st.warning(f"Task `{task_id}` {task.status.value}: {counts}. {task.error or ''}")
    else:
        st.info(f"Task `{task_id}` is {task.status.value}: {counts}.")
    result = view.result
    per_kind_ui(result)
    if not result.table.empty:
        heading = ("Python outputs per subtask" if result.operation == "python"
                   else "Results")
        st.markdown(f"**{heading}** ({len(result.table):,} rows)")
        st.dataframe(result.table.head(MAX_TABLE_ROWS), hide_index=True)
        downloads_ui(result, key)
    failures_ui(view.failures)
