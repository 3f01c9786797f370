"""The Run a task page in AppTest against a real local grid (2 workers, SQLite registry)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from database.models import TaskStatus
from database.store import Store
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
    assert '"billing"' in at.text_area(key="plan_params_1").value
    assert _new_task_ids(store, before) == []

    at.number_input(key="plan_shards_1").set_value(3).run()
    at.button(key="run_go").click().run()
    [task_id] = _new_task_ids(store, before)
    assert store.get_task(task_id).task.subtask_count == 3

    at = wait_until(lambda: _finished(at), timeout=90, interval=0.3, what="classify task")
    assert store.get_task(task_id).task.status is TaskStatus.COMPLETED
    table = next(d.value for d in at.dataframe if "score" in d.value.columns)
    assert len(table) == 40
    assert list(table["row"]) == list(range(40))
    assert set(table["label"]) <= {"billing", "bug", "feature"}
    assert table.loc[0, "text"].startswith("I was charged twice")
    assert [b.label for b in at.get("download_button")] == ["Download CSV", "Download JSON"]


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
    assert any("No plan" in e.value and "I did not understand" in e.value for e in at.error)


def test_invalid_edited_parameters_are_refused_before_running(grid: object) -> None:
    at = _plan(_page(), "run python over range(3): RESULT = 1")
    at.text_area(key="plan_params_1").input("{not json").run()
    assert any("not valid JSON" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "run_go"]


def test_a_running_task_shows_progress_and_can_be_cancelled(grid: object, store: Store) -> None:
    before = {t.id for t in store.list_tasks(limit=200)}
    at = _plan(_page(), "noop 12 sleep 2000")
    at.button(key="run_go").click().run()
    [task_id] = _new_task_ids(store, before)
    # The page polls the background run; the form stays usable and Run waits.
    assert at.button(key="run_go").proto.disabled
    assert at.get("progress"), "a progress bar while it runs"
    wait_until(lambda: at.run() and at.dataframe and any(
        "running" in d.value.columns and d.value["running"].str.len().sum() > 0
        for d in at.dataframe), timeout=30, interval=0.2, what="shards running on workers")
    at.button(key="run_cancel").click().run()
    wait_until(lambda: store.get_task(task_id).task.status is TaskStatus.CANCELLED, timeout=30,
               what="the task to be cancelled")
    at = wait_until(lambda: (at.run() and any("cancelled" in w.value for w in at.warning)
                             and at), timeout=30, interval=0.2, what="the cancelled outcome")
    failures = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert set(failures["status"]) == {"cancelled"}
