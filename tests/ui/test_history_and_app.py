"""The History page and the whole app (navigation + sidebar) in AppTest, real local grid."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from database.models import NewSubtask, TaskStatus
from database.store import Store
from master_app.jobs import JobRunner
from master_app.planning import LocalPlanner
from master_app.settings import MasterSettings
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
    box = at.selectbox(key="history_pick")
    [label] = [o for o in box.options if o.startswith(task_id)]
    return box.set_value(label).run()


def test_history_lists_tasks_and_opens_one(finished_task: str, store: Store) -> None:
    at = AppTest.from_string(PAGE, default_timeout=30).run()
    assert not at.exception
    listing = at.dataframe[0].value
    row = listing[listing["id"] == finished_task].iloc[0]
    assert row["status"] == "completed" and row["subtasks"] == 4
    at = _open(at, finished_task)
    assert at.subheader[0].value == f"Task `{finished_task}`"
    assert at.json[0].value and '"operation": "python"' in at.json[0].value.replace("'", '"')
    outputs = next(d.value for d in at.dataframe if "exit_code" in d.value.columns)
    assert list(outputs["output"]) == [100, 101, 102, 103]
    assert at.button(key=f"resume_{finished_task}").proto.disabled  # finished: no resume


def test_rerun_makes_a_new_task_with_the_same_subtasks(finished_task: str, store: Store) -> None:
    before = {t.id for t in store.list_tasks(limit=200)}
    at = _open(AppTest.from_string(PAGE, default_timeout=30).run(), finished_task)
    at.button(key=f"rerun_{finished_task}").click().run()
    assert any("Started task" in s.value for s in at.success)
    [new_id] = [t.id for t in store.list_tasks(limit=200) if t.id not in before]
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
