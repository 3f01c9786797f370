"""The History page: past tasks as a clickable table (short ids, filters, search); a task
opens from its row with its plan as cards, its results and failures; re-run; resume an
unfinished, cancelled or failed one."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import streamlit as st

from database.models import TaskRecord, TaskStatus
from database.store import StoreError
from master_app.ui import jobs_api
from master_app.ui.auth import can_operate
from master_app.ui.formatting import duration, error_markdown, status_style, task_rows
from master_app.ui.plan_view import plan_preview_ui
from master_app.ui.resources import get_runs, get_settings, get_store
from master_app.ui.results_view import results_ui

logger = logging.getLogger(__name__)

PAGE_SIZE = 200
#: The session key of the task opened (set by a row click, a search with one match, or a
#: re-run, which opens the new task).
OPEN_KEY = "history_open"


def filter_tasks(tasks: list[TaskRecord], statuses: list[str], search: str) -> list[TaskRecord]:
    """The tasks with one of ``statuses`` (all when empty) whose id or command contains
    ``search`` (case-insensitive)."""
    needle = search.strip().lower()
    return [t for t in tasks
            if (not statuses or str(t.status) in statuses)
            and (not needle or needle in t.id.lower() or needle in t.command.lower())]


def filters_ui(tasks: list[TaskRecord]) -> list[TaskRecord]:
    """Status filter and search box; returns the tasks to list."""
    cols = st.columns([2, 3])
    statuses = cols[0].multiselect(
        "Status", [s.value for s in TaskStatus], key="history_status",
        placeholder="All statuses", help="Show only tasks in these states.")
    search = cols[1].text_input(
        "Search tasks", key="history_search", placeholder="id or words of the command",
        help="Matches the task id or its command; one match opens the task.")
    shown = filter_tasks(tasks, statuses, search)
    typed = search != st.session_state.get("_history_search_prev", "")
    st.session_state["_history_search_prev"] = search
    if typed and search.strip() and len(shown) == 1:
        st.session_state[OPEN_KEY] = shown[0].id
    return shown


def task_table_ui(tasks: list[TaskRecord]) -> TaskRecord | None:
    """The task table: click a row to open the task. Returns the task open (if listed)."""
    if not tasks:
        st.info("No task matches these filters.")
        return None
    frame = pd.DataFrame(task_rows(tasks))
    event: Any = st.dataframe(
        frame.style.map(status_style, subset=["status"]).format(na_rep="—"), hide_index=True,
        on_select="rerun", selection_mode="single-row",
        key=f"history_table_{st.session_state.get('_history_table_gen', 0)}",
        column_config={"id": st.column_config.TextColumn("id", help="The task id's start; "
                                                         "the full id is in the task view")},
    )
    selected = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    clicked = tasks[selected[0]].id if selected and 0 <= selected[0] < len(tasks) else None
    if clicked is not None and clicked != st.session_state.get("_history_clicked"):
        st.session_state[OPEN_KEY] = clicked  # a new click (a kept selection opens nothing)
    st.session_state["_history_clicked"] = clicked
    st.caption("Click a row to open its task.")
    open_id = st.session_state.get(OPEN_KEY)
    return next((t for t in tasks if t.id == open_id), None)


def task_actions_ui(task: TaskRecord) -> None:
    """Re-run a task (a new task with the same subtasks, opened here at once) or resume
    one that did not complete (only its subtasks without a result run)."""
    if not can_operate():
        return
    runs = get_runs()
    active = runs.get(task.id)
    cols = st.columns(2)
    if cols[0].button("Re-run", key=f"rerun_{task.id}",
                      help="A new task with the same command, plan and data."):
        try:
            new_id, total, factory = jobs_api.rerun_task(task.id, get_store(), get_settings())
        except (StoreError, jobs_api.PlanError) as exc:
            st.error(error_markdown(f"Not re-run: {exc}"))
        else:
            runs.start(new_id, total, factory)
            st.session_state["run_task_id"] = new_id
            st.session_state[OPEN_KEY] = new_id
            st.session_state["_history_clear_filters"] = True  # so that the new task shows
            st.session_state["history_notice"] = (
                f"Started task `{new_id}` (a re-run of `{task.id[:8]}`); follow it here or "
                "on the **Run a task** page.")
            st.rerun()  # list it at once
    running = active is not None and active.running
    resumable = task.status is not TaskStatus.COMPLETED and not running
    if cols[1].button("Resume", key=f"resume_{task.id}", disabled=not resumable,
                      help="Runs only the subtasks without a result (a cancelled or failed "
                      "task too); nothing while a run is working on it."):
        try:
            task_id, total, factory = jobs_api.resume_run(task, get_store(), get_settings())
        except StoreError as exc:
            st.error(f"Not resumed: {exc}")
        else:
            runs.start(task_id, total, factory)
            st.session_state["run_task_id"] = task_id
            st.session_state["history_notice"] = (
                f"Resumed task `{task_id}`; follow it here or on the **Run a task** page.")
            st.rerun()


def plan_ui(task: TaskRecord) -> None:
    """The task's plan as cards; the raw JSON behind a toggle."""
    try:
        plan = jobs_api.parse_plan(task.plan)
    except jobs_api.PlanError:
        plan = None
    if plan is not None:
        plan_preview_ui(plan)
    if plan is None or st.toggle("Show the plan as JSON", key=f"history_json_{task.id}"):
        st.json(task.plan, expanded=plan is None)


def task_detail_ui(task: TaskRecord) -> None:
    """One task: summary, plan, actions, results and failures."""
    st.subheader(f"Task `{task.id}`")
    cols = st.columns(4)
    cols[0].metric("Status", str(task.status))
    cols[1].metric("Duration", duration(task))
    cols[2].metric("Subtasks", task.subtask_count)
    cols[3].metric("Created", task.created_at.strftime("%H:%M:%S"))
    st.markdown(f"**Command:** {task.command}")
    if task.error and task.status is TaskStatus.FAILED:
        st.error(error_markdown(f"The task failed: {task.error}"))
    with st.expander("Plan", expanded=True):
        plan_ui(task)
    task_actions_ui(task)
    results_ui(task.id, key=f"history_{task.id}")


def unfinished_ui() -> None:
    """Tasks left pending or running (the master stopped mid-task): resume them all."""
    runs = get_runs()
    store = get_store()
    idle = [t for t in store.list_unfinished_tasks()
            if (run := runs.get(t.id)) is None or not run.running]
    if not idle:
        return
    st.warning(f"{len(idle)} unfinished task(s) that nothing is running: the master stopped "
               "while they ran. Resuming sends only the subtasks without a result.")
    if can_operate() and st.button("Resume all unfinished", key="resume_all"):
        for task in idle:
            try:
                task_id, total, factory = jobs_api.resume_run(task, store, get_settings())
            except StoreError as exc:
                st.error(f"Task {task.id} not resumed: {exc}")
                continue
            runs.start(task_id, total, factory)
        st.success(f"Resumed {len(idle)} task(s).")


def history_page() -> None:
    """The page body."""
    st.title("History")
    if st.session_state.pop("_history_clear_filters", False):
        st.session_state["history_search"] = ""
        st.session_state["history_status"] = []
        # A new table (no row selected): the old selection would point at another task
        # now that the list has grown by one.
        st.session_state["_history_table_gen"] = st.session_state.get("_history_table_gen",
                                                                      0) + 1
        st.session_state["_history_clicked"] = None
    notice = st.session_state.pop("history_notice", None)
    if notice:
        st.success(notice)
    try:
        tasks = get_store().list_tasks(limit=PAGE_SIZE)
    except StoreError as exc:
        st.error(f"The job store cannot be read: {exc}")
        return
    if not tasks:
        st.info("No tasks yet: run one on the **Run a task** page.")
        return
    st.button("Refresh", key="history_refresh", help="Read the task list again.")
    unfinished_ui()
    task = task_table_ui(filters_ui(tasks))
    if task is not None:
        st.divider()
        task_detail_ui(task)
