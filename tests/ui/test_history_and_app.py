"""The History page and the whole app (navigation + sidebar) in AppTest, real local grid."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from database.models import NewSubtask, SubtaskStatus, TaskStatus
from database.store import Store
from master_app.planning import LocalPlanner
from master_app.service import JobRunner
from master_app.settings import MasterSettings
from tests.support.ui import _loopback_master  # noqa: F401 - autouse: a loopback master
from tests.support.waiting import wait_until

APP = Path(__file__).resolve().parents[2] / "master_app" / "app.py"
PAGE = """
from master_app.ui.history_page import history_page
history_page()
"""


@pytest.fixture(scope="module")
def finished_task(grid: object, store: Store) -> str:
    """A python task run to the end by the real JobRunner, outside the UI."""
    plan = LocalPlanner().plan("run python over range(4): RESULT = INPUT + 100", None, [])
    runner = JobRunner(store, MasterSettings())

    async def go() -> str:
        async with runner:
            task_id = runner.submit("run python over range(4): RESULT = INPUT + 100", plan, None)
            outcome = await runner.run(task_id)
            assert outcome.ok, outcome.error
            return task_id

    return asyncio.run(go())


def _open(at: AppTest, task_id: str) -> AppTest:
    """Open a task as a person can in AppTest (which cannot click a table row): search
    for its id; one match opens it."""
    return at.text_input(key="history_search").input(task_id).run()


def test_history_lists_tasks_and_opens_one(finished_task: str, store: Store) -> None:
    at = AppTest.from_string(PAGE, default_timeout=30).run()
    assert not at.exception
    listing = at.dataframe[0].value
    row = listing[listing["id"] == finished_task[:8]].iloc[0]  # short ids: no scrolling
    assert row["status"] == "completed" and row["subtasks"] == 4
    assert list(at.dataframe[0].proto.selection_mode) == [0]  # SINGLE_ROW: a row click opens
    at = _open(at, finished_task)
    assert at.subheader[0].value == f"Task `{finished_task}`"
    # The plan as cards; its JSON behind a toggle.
    assert any("**Map: python**" in m.value for m in at.markdown)
    assert not at.json
    at.toggle(key=f"history_json_{finished_task}").set_value(True).run()
    assert '"operation": "python"' in at.json[0].value.replace("'", '"')
    outputs = next(d.value for d in at.dataframe if "exit_code" in d.value.columns)
    assert list(outputs["output"]) == [100, 101, 102, 103]
    assert at.button(key=f"resume_{finished_task}").proto.disabled  # finished: no resume


def test_rerun_makes_a_new_task_with_the_same_subtasks(finished_task: str, store: Store) -> None:
    before = {t.id for t in store.list_tasks(limit=200)}
    at = _open(AppTest.from_string(PAGE, default_timeout=30).run(), finished_task)
    at.button(key=f"rerun_{finished_task}").click().run()
    assert any("Started task" in s.value for s in at.success)
    [new_id] = [t.id for t in store.list_tasks(limit=200) if t.id not in before]
    # Listed and opened at once, no Refresh needed.
    assert new_id[:8] in list(at.dataframe[0].value["id"])
    assert at.subheader[0].value == f"Task `{new_id}`"
    done = wait_until(lambda: store.get_task(new_id).task.status.finished, timeout=60,
                      what="re-run to finish")
    assert done
    detail = store.get_task(new_id)
    assert detail.task.status is TaskStatus.COMPLETED
    assert [s.result["output"]["result"] for s in detail.subtasks if s.result] == [
        100, 101, 102, 103]


def test_an_unfinished_task_can_be_resumed(grid: object, store: Store) -> None:
    # A task the master persisted but never ran (as after a crash of the master).
    task = store.create_task(
        "noop 2", {"operation": "noop", "params": {"count": 2}},
        [NewSubtask(idx=i, kind="noop", payload={"kind": "noop", "echo": i, "rows": [i]})
         for i in range(2)],
    )
    at = _open(AppTest.from_string(PAGE, default_timeout=30).run(), task.id)
    resume = at.button(key=f"resume_{task.id}")
    assert not resume.proto.disabled
    resume.click().run()
    assert any("Resumed task" in s.value for s in at.success)
    wait_until(lambda: store.get_task(task.id).task.status.finished, timeout=60,
               what="resumed task to finish")
    detail = store.get_task(task.id)
    assert detail.task.status is TaskStatus.COMPLETED, (detail.task, detail.subtasks)


def test_the_app_has_navigation_and_a_sidebar_without_secrets(grid: object) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Run a task"
    side = " ".join(m.value for m in at.sidebar.markdown)
    assert "`sqlite`" in side
    assert "local (no `GEMINI_API_KEY`)" in side
    assert "**Auth token:** set" in side
    assert "ui-test-token" not in side  # never the secret itself
    assert "**Workers:** 2 live of 2" in side


def test_an_unexpected_page_error_is_a_message_not_a_traceback() -> None:
    at = AppTest.from_string(
        "from master_app.app import guarded\n"
        "def broken():\n"
        "    raise ValueError('the widget exploded')\n"
        "guarded(broken)()\n",
        default_timeout=30,
    ).run()
    assert not at.exception
    [error] = at.error
    assert "ValueError: the widget exploded" in error.value
    assert "reload the page" in error.value


def test_resume_all_unfinished_tasks(grid: object, store: Store) -> None:
    tasks = [store.create_task(
        f"noop {n}", {"operation": "noop", "params": {"count": n}},
        [NewSubtask(idx=i, kind="noop", payload={"kind": "noop", "echo": i, "rows": [i]})
         for i in range(n)]) for n in (1, 3)]
    at = AppTest.from_string(PAGE, default_timeout=30).run()
    assert any("unfinished task(s)" in w.value for w in at.warning)
    at.button(key="resume_all").click().run()
    assert any("Resumed" in s.value for s in at.success)
    for task in tasks:
        wait_until(lambda t=task: store.get_task(t.id).task.status.finished, timeout=60,
                   what=f"task {task.id} to finish")
        assert store.get_task(task.id).task.status is TaskStatus.COMPLETED
    assert not store.list_unfinished_tasks()
    at.run()
    assert not any("unfinished task(s)" in w.value for w in at.warning)


def test_filters_narrow_the_list(finished_task: str, store: Store) -> None:
    at = AppTest.from_string(PAGE, default_timeout=30).run()
    at.multiselect(key="history_status").set_value(["cancelled"]).run()
    ids = list(at.dataframe[0].value["id"]) if at.dataframe else []
    assert finished_task[:8] not in ids
    at.multiselect(key="history_status").set_value(["completed"]).run()
    at.text_input(key="history_search").input("INPUT + 100").run()
    assert finished_task[:8] in list(at.dataframe[0].value["id"])


def test_a_cancelled_task_can_be_resumed(grid: object, store: Store) -> None:
    task = store.create_task(
        "noop 2", {"operation": "noop", "params": {"count": 2}},
        [NewSubtask(idx=i, kind="noop", payload={"kind": "noop", "echo": i, "rows": [i]})
         for i in range(2)],
    )
    for i in range(2):
        store.record_result(f"{task.id}:{i}", SubtaskStatus.CANCELLED, error="cancelled")
    store.set_task_status(task.id, TaskStatus.CANCELLED, error="cancelled")
    at = _open(AppTest.from_string(PAGE, default_timeout=30).run(), task.id)
    resume = at.button(key=f"resume_{task.id}")
    assert not resume.proto.disabled
    resume.click().run()
    wait_until(lambda: store.get_task(task.id).task.status is TaskStatus.COMPLETED,
               timeout=60, what="the resumed cancelled task to complete")


SIDEBAR_AND_DRAIN = """
import streamlit as st
from database.models import WorkerStatus
from master_app.ui.resources import get_store
from master_app.ui.sidebar import sidebar_ui

workers_count = sidebar_ui()
store = get_store()
first = store.list_workers()[0]
if st.button("Drain", key="drain"):  # a page's own action, after the sidebar is drawn
    store.set_worker_status(first.id, WorkerStatus.DRAINING)
if st.button("Activate", key="activate"):
    store.set_worker_status(first.id, WorkerStatus.ACTIVE)
workers_count()
"""


def test_the_sidebar_count_follows_the_page_action_of_the_same_run(grid: object) -> None:
    at = AppTest.from_string(SIDEBAR_AND_DRAIN, default_timeout=30).run()
    assert "**Workers:** 2 live of 2" in [m.value for m in at.sidebar.markdown]
    at.button(key="drain").click().run()
    try:
        assert "**Workers:** 1 live of 2" in [m.value for m in at.sidebar.markdown]
    finally:
        at.button(key="activate").click().run()
    assert "**Workers:** 2 live of 2" in [m.value for m in at.sidebar.markdown]
