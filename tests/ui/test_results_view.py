"""The results view per kind, over tasks written to a real SQLite store as the runner does."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from database.config import StoreSettings, open_store
from database.models import NewSubtask, SubtaskStatus, TaskStatus
from database.store import Store

VIEW = """
import streamlit as st
from master_app.ui.results_view import results_ui
results_ui(st.session_state["task_id"], key="t")
"""


@pytest.fixture
def own_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    path = tmp_path / "results.db"
    monkeypatch.setenv("NADG_REGISTRY", str(path))
    s = open_store(StoreSettings(NADG_REGISTRY=path))
    yield s
    s.close()


def _task(store: Store, plan: dict[str, Any], payloads: list[dict[str, Any]],
          outcomes: list[dict[str, Any] | str]) -> str:
    """A finished task: each outcome is a worker output (completed) or an error (failed)."""
    kind = plan["operation"]
    task = store.create_task("cmd", plan, [NewSubtask(idx=i, kind=kind, payload=p)
                                           for i, p in enumerate(payloads)])
    for i, outcome in enumerate(outcomes):
        sid = f"{task.id}:{i}"
        store.record_attempt(sid, None)
        if isinstance(outcome, str):
            store.record_result(sid, SubtaskStatus.FAILED, error=outcome)
        else:
            store.record_result(sid, SubtaskStatus.COMPLETED, result={
                "id": sid, "status": "completed", "output": outcome, "error": None,
                "metrics": {}})
    failed = any(isinstance(o, str) for o in outcomes)
    store.set_task_status(task.id, TaskStatus.FAILED if failed else TaskStatus.COMPLETED)
    return task.id


def _view(task_id: str) -> AppTest:
    at = AppTest.from_string(VIEW, default_timeout=30)
    at.session_state["task_id"] = task_id
    return at.run()


def test_generate_shows_text_per_row_and_what_failed(own_store: Store) -> None:
    task_id = _task(
        own_store, {"operation": "generate", "params": {}},
        [{"kind": "generate", "prompts": ["a", "b"], "rows": [0, 1]},
         {"kind": "generate", "prompts": ["c"], "rows": [2]}],
        [{"completions": ["A!", "B!"]}, "worker http://w died: ConnectError"],
    )
    at = _view(task_id)
    assert not at.exception
    assert any("Generated text per row" in m.value for m in at.markdown)
    assert [m.value for m in at.markdown if m.value in ("A!", "B!")] == ["A!", "B!"]
    assert any("failed: worker http://w died" in m.value for m in at.markdown)
    failures = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(failures["subtask"]) == [1] and list(failures["rows"]) == ["2"]
    assert "ConnectError" in failures["reason"].iloc[0]
    assert any("failed: 1 of 2 subtasks completed, 1 failed" in w.value for w in at.warning)
    assert any(c.value.startswith("row 1: ") for c in at.caption)  # rows count from 1


def test_embed_offers_the_matrix_as_npy(own_store: Store) -> None:
    task_id = _task(
        own_store, {"operation": "embed", "params": {}},
        [{"kind": "embed", "texts": ["x", "y"], "rows": [0, 1]}],
        [{"embeddings": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "dim": 3}],
    )
    at = _view(task_id)
    assert any("2 × 3 matrix" in c.value for c in at.caption)
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download CSV", "Download JSON", "Download embeddings (.npy)"]
    from master_app.ui import jobs_api

    matrix = jobs_api.task_view(task_id, own_store).result.matrix
    assert matrix is not None
    buffer = io.BytesIO()
    np.save(buffer, matrix)
    assert np.load(io.BytesIO(buffer.getvalue())).shape == (2, 3)


def test_a_task_still_running_shows_no_failures_for_pending_subtasks(own_store: Store) -> None:
    task = own_store.create_task("cmd", {"operation": "noop", "params": {"count": 2}}, [
        NewSubtask(idx=i, kind="noop", payload={"kind": "noop", "rows": [i]}) for i in range(2)])
    own_store.set_task_status(task.id, TaskStatus.RUNNING)
    at = _view(task.id)
    assert any("is running: 0 of 2 subtasks completed" in i.value for i in at.info)
    assert not any("reason" in d.value.columns for d in at.dataframe)


CLASSIFY_VIEW = """
import pandas as pd
import streamlit as st
from master_app.ui.results_view import results_ui
frame = pd.DataFrame({"id": [1, 2, 3], "text": ["a", "b", "c"],
                      "label": ["bug", "billing", "bug"]})
results_ui(st.session_state["task_id"], key="t", frame=frame)
"""


def test_classify_results_keep_the_input_columns_and_ids(own_store: Store) -> None:
    task_id = _task(
        own_store, {"operation": "classify", "params": {"labels": ["bug", "billing"]}},
        [{"kind": "classify", "texts": ["a", "b"], "rows": [0, 1]},
         {"kind": "classify", "texts": ["c"], "rows": [2]}],
        [{"labels": ["bug", "bug"], "scores": [[0.9, 0.1], [0.6, 0.4]]},
         {"labels": ["billing"], "scores": [[0.2, 0.8]]}],
    )
    at = AppTest.from_string(CLASSIFY_VIEW, default_timeout=30)
    at.session_state["task_id"] = task_id
    at.run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "predicted label" in d.value.columns)
    assert list(table.columns) == ["id", "text", "label", "predicted label", "score", "error"]
    assert list(table["id"]) == [1, 2, 3]  # the input's own ids, not positions from 0
    assert list(table["label"]) == ["bug", "billing", "bug"]  # the original labels kept
    assert list(table["predicted label"]) == ["bug", "bug", "billing"]


def test_without_the_input_rows_count_from_one() -> None:
    import pandas as pd

    from master_app.ui.results_view import with_input

    table = pd.DataFrame({"row": [0, 1], "text": ["a", "b"], "label": ["x", "y"]})
    assert list(with_input(table, None)["row"]) == [1, 2]
    # A table that is not per row (python outputs) is shown as it is.
    outputs = pd.DataFrame({"idx": [0], "output": [1]})
    assert with_input(outputs, None) is outputs


def test_a_cancelled_task_counts_cancelled_subtasks_apart(own_store: Store) -> None:
    task = own_store.create_task("cmd", {"operation": "noop", "params": {"count": 3}}, [
        NewSubtask(idx=i, kind="noop", payload={"kind": "noop", "rows": [i]}) for i in range(3)])
    own_store.record_result(f"{task.id}:0", SubtaskStatus.COMPLETED, result={
        "id": f"{task.id}:0", "status": "completed", "output": {"echo": 0}, "error": None,
        "metrics": {}})
    for i in (1, 2):
        own_store.record_result(f"{task.id}:{i}", SubtaskStatus.CANCELLED, error="cancelled")
    own_store.set_task_status(task.id, TaskStatus.CANCELLED, error="cancelled")
    at = _view(task.id)
    [warning] = [w.value for w in at.warning]
    assert "cancelled: 1 of 3 subtasks completed, 2 cancelled." in warning
    assert "failed" not in warning
