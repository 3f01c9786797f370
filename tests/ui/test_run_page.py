"""The Run a task page in AppTest against a real local grid (2 workers, SQLite registry)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from database.models import TaskStatus
from database.store import Store
from tests.support.ui import _loopback_master  # noqa: F401 - autouse: a loopback master
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
TICKETS = REPO / "examples" / "tickets.csv"
PAGE = """
from master_app.ui.run_page import run_page
run_page()
"""


def _page() -> AppTest:
    return AppTest.from_string(PAGE, default_timeout=30).run()


def _plan(at: AppTest, command: str) -> AppTest:
    at.text_area(key="run_command").input(command)
    return at.button(key="run_plan_btn").click().run()


def _finished(at: AppTest) -> AppTest | None:
    at.run()
    return at if any("completed:" in s.value for s in at.success) else None


def _new_task_ids(store: Store, before: set[str]) -> list[str]:
    return [t.id for t in store.list_tasks(limit=200) if t.id not in before]


def test_plan_is_shown_before_it_runs_and_the_shard_count_is_editable(
    grid: object, store: Store
) -> None:
    before = {t.id for t in store.list_tasks(limit=200)}
    at = _page()
    at.file_uploader(key="run_upload").upload("tickets.csv", TICKETS.read_bytes(), "text/csv")
    at.run()
    assert "40 rows" in at.caption[0].value
    at = _plan(at, "classify as billing / bug / feature")
    assert not at.exception and not at.error
    # The plan is on screen and nothing has been submitted yet.
    assert any("Planner: **local**" in c.value for c in at.caption)
    assert at.selectbox(key="plan_op_1").value == "classify"
    assert at.selectbox(key="plan_col_1").value == "text"
    assert any("classify 40 rows of column 'text'" in m.value for m in at.markdown)  # cards
    assert _new_task_ids(store, before) == []

    at.number_input(key="plan_shards_1").set_value(3).run()
    at.button(key="run_go").click().run()
    [task_id] = _new_task_ids(store, before)
    assert store.get_task(task_id).task.subtask_count == 3

    at = wait_until(lambda: _finished(at), timeout=90, interval=0.3, what="classify task")
    assert store.get_task(task_id).task.status is TaskStatus.COMPLETED
    table = next(d.value for d in at.dataframe if "score" in d.value.columns)
    assert len(table) == 40
    # The input's own columns and ids (1..40), its original labels, then the prediction.
    assert list(table.columns[:4]) == ["id", "text", "label", "predicted label"]
    assert list(table["id"]) == [str(i) for i in range(1, 41)]
    assert set(table["predicted label"]) <= {"billing", "bug", "feature"}
    assert table.loc[0, "text"].startswith("I was charged twice")
    assert [b.label for b in at.get("download_button")] == [
        "Download plan", "Download CSV", "Download JSON"]


def test_python_task_runs_to_the_end_with_outputs_per_subtask(grid: object, store: Store) -> None:
    before = {t.id for t in store.list_tasks(limit=200)}
    at = _plan(_page(), "run python over range(6): RESULT = INPUT ** 2")
    assert at.selectbox(key="plan_op_1").value == "python"
    shards = at.number_input(key="plan_shards_1")
    assert shards.value == 6 and shards.proto.disabled  # one subtask per input
    at.button(key="run_go").click().run()
    [task_id] = _new_task_ids(store, before)
    at = wait_until(lambda: _finished(at), timeout=60, interval=0.3, what="python task")
    table = next(d.value for d in at.dataframe if "exit_code" in d.value.columns)
    assert list(table["output"]) == [0, 1, 4, 9, 16, 25]
    assert any("Python outputs per subtask" in m.value for m in at.markdown)
    assert store.get_task(task_id).task.status is TaskStatus.COMPLETED


def test_a_command_the_planner_does_not_understand_is_an_error_message(
    grid: object, store: Store
) -> None:
    at = _plan(_page(), "make me a sandwich")
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("No plan: I did not understand")
    # The help keeps its line breaks (a code block), one command a line.
    assert "```text\nI understand these commands:\n  embed" in error


def test_invalid_edited_parameters_are_refused_before_running(grid: object) -> None:
    at = _plan(_page(), "run python over range(3): RESULT = 1")
    assert not [t for t in at.text_area if t.key == "plan_params_1"]  # behind "advanced"
    at.toggle(key="run_advanced").set_value(True).run()
    at.text_area(key="plan_params_1").input("{not json").run()
    assert any("not valid JSON" in e.value for e in at.error)
    assert at.button(key="run_go").proto.disabled


def test_a_running_task_cancels_fast_counts_cancelled_and_resumes(
    grid: object, store: Store
) -> None:
    before = {t.id for t in store.list_tasks(limit=200)}
    at = _plan(_page(), "noop 12 sleep 1500")
    at.button(key="run_go").click().run()
    [task_id] = _new_task_ids(store, before)
    # The page polls the background run; the form stays usable and Run waits.
    assert at.button(key="run_go").proto.disabled
    assert at.get("progress"), "a progress bar while it runs"
    assert at.get("image"), "the subtask grid is one image"
    wait_until(lambda: at.run() and any(
        "running" in d.value.columns and d.value["running"].sum() > 0
        for d in at.dataframe), timeout=30, interval=0.2, what="subtasks running on workers")
    clicked = time.monotonic()
    at.button(key="run_cancel").click().run()
    wait_until(lambda: store.get_task(task_id).task.status is TaskStatus.CANCELLED, timeout=30,
               interval=0.05, what="the task to be cancelled")
    cancel_s = time.monotonic() - clicked
    assert cancel_s < 2.0, f"cancel took {cancel_s:.1f}s"
    at = wait_until(lambda: (at.run() and any("cancelled" in w.value for w in at.warning)
                             and at), timeout=30, interval=0.2, what="the cancelled outcome")
    [warning] = [w.value for w in at.warning if "cancelled" in w.value]
    assert "12 cancelled" in warning and "failed" not in warning
    assert {m.label: m.value for m in at.metric}["Cancelled"] == "12"
    lanes = next(d.value for d in at.dataframe if "per second" in d.value.columns)
    assert lanes["running"].sum() == 0  # no lane says running after the end
    failures = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert set(failures["status"]) == {"cancelled"}
    # A cancelled task resumes: only its subtasks without a result run, to the end.
    at.button(key="run_resume").click().run()
    at = wait_until(lambda: _finished(at), timeout=60, interval=0.3, what="resumed task")
    assert store.get_task(task_id).task.status is TaskStatus.COMPLETED
    assert any("12 of 12 subtasks completed" in s.value for s in at.success)


def test_any_edit_of_the_command_or_data_makes_the_plan_stale(grid: object,
                                                              store: Store) -> None:
    before = {t.id for t in store.list_tasks(limit=200)}
    at = _page()
    at.file_uploader(key="run_upload").upload("tickets.csv", TICKETS.read_bytes(), "text/csv")
    at = _plan(at.run(), "classify as billing / bug / feature")
    assert not at.button(key="run_go").proto.disabled
    at.text_area(key="run_command").input("embed").run()
    assert any("out of date: the command changed" in w.value for w in at.warning)
    assert at.button(key="run_go").proto.disabled  # the classify plan cannot run as "embed"
    assert _new_task_ids(store, before) == []
    at = at.button(key="run_plan_btn").click().run()  # planned again: runnable again
    assert not at.warning and not at.button(key="run_go").proto.disabled
    assert at.selectbox(key="plan_op_2").value == "embed"
    other = b"id,text\n1,a different file\n2,with two rows\n"
    at.file_uploader(key="run_upload").upload("other.csv", other, "text/csv")
    at.run()
    assert any("out of date: the data changed" in w.value for w in at.warning)
    assert at.button(key="run_go").proto.disabled


PAGES = """
import streamlit as st
from master_app.ui.run_page import run_page
if st.session_state.get("page", "run") == "run":
    run_page()
else:
    st.title("Another page")
"""


def test_the_command_data_and_plan_outlive_a_visit_to_another_page(grid: object) -> None:
    at = AppTest.from_string(PAGES, default_timeout=30).run()
    at.file_uploader(key="run_upload").upload("tickets.csv", TICKETS.read_bytes(), "text/csv")
    at = _plan(at.run(), "classify as billing / bug / feature")
    at.session_state["page"] = "other"
    at.run()
    assert at.title[0].value == "Another page"
    at.session_state["page"] = "run"
    at.run()
    assert not at.exception
    assert at.text_area(key="run_command").value == "classify as billing / bug / feature"
    assert any("tickets.csv: 40 rows" in c.value and "loaded before" in c.value
               for c in at.caption)
    assert not at.warning  # the plan is still the plan of what is on the page
    assert not at.button(key="run_go").proto.disabled
    # Another rerun on the page keeps it too (the empty file box is not a removal).
    at.run()
    assert any("loaded before" in c.value for c in at.caption)
    at.button(key="run_forget_data").click().run()
    assert not any("tickets.csv" in c.value for c in at.caption)
    assert any("out of date: the data changed" in w.value for w in at.warning)


def test_an_error_without_data_speaks_plainly(grid: object) -> None:
    at = _plan(_page(), "classify as billing / bug")
    [error] = [e.value for e in at.error]
    assert "upload a data file" in error and "--data" not in error


def test_a_big_file_is_read_once_and_summarised_once(
    grid: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from master_app.intake import Dataset

    calls = {"summary": 0}
    real = Dataset.summary

    def counted(self: Dataset) -> Any:
        calls["summary"] += 1
        return real(self)

    monkeypatch.setattr(Dataset, "summary", counted)
    rows = "\n".join(f"{i},ticket {i} about a bug in the app,bug" for i in range(1, 86_001))
    content = ("id,text,label\n" + rows + "\n").encode()
    at = _page()
    at.file_uploader(key="run_upload").upload("big.csv", content, "text/csv")
    at.run()
    assert any("big.csv: 86,000 rows" in c.value for c in at.caption)
    at = _plan(at, "classify as billing / bug / feature")
    planned = calls["summary"]  # the file's own (once) and the planner's
    timings = []
    for shards in (3, 4, 5):
        started = time.monotonic()
        at.number_input(key="plan_shards_1").set_value(shards).run()
        timings.append(time.monotonic() - started)
        assert not at.exception and not at.error
    assert calls["summary"] == planned, "a click must not summarise the data again"
    assert min(timings) < 1.0, timings


def test_the_merged_answer_of_a_plan_with_a_reduce_step_is_shown(grid: object,
                                                                 store: Store) -> None:
    at = _plan(_page(), "count the primes below 200000")
    assert any("Reduce: python" in m.value for m in at.markdown)  # the reduce card
    at.button(key="run_go").click().run()
    at = wait_until(lambda: _finished(at), timeout=90, interval=0.3, what="primes task")
    assert any(m.value == "**Answer**" for m in at.markdown)
    assert any(m.value.strip() == "17984" for m in at.markdown), [m.value for m in at.markdown]


def test_a_downloaded_plan_loads_back_with_its_command(grid: object) -> None:
    from master_app.ui import jobs_api

    at = _plan(_page(), "noop 3")
    assert [b.label for b in at.get("download_button")] == ["Download plan"]
    plan = at.session_state["run_plan"]["plan"]
    content = jobs_api.plan_download("noop 3", plan, None, "local").encode()
    at = _page()
    at.file_uploader(key="run_plan_file").upload("plan.json", content, "application/json")
    at.run()
    assert not at.exception and not at.error
    assert at.text_area(key="run_command").value == "noop 3"
    assert any("Planner: **saved**" in c.value for c in at.caption)
    assert not at.button(key="run_go").proto.disabled
    broken = b'{"command": "noop 3", "plan": {"operation": "classify", "params": {}}}'
    at.file_uploader(key="run_plan_file").upload("bad.json", broken, "application/json")
    at.run()
    [error] = [e.value for e in at.error]
    assert error.startswith("Cannot use this plan file") and "Value error" not in error
