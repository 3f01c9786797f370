"""The History page: past tasks; open one to see its plan, results and failures; re-run;
resume an unfinished one."""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from database.models import TaskRecord
from database.store import StoreError
from master_app.ui import jobs_api
from master_app.ui.formatting import duration, status_style, task_rows
from master_app.ui.resources import get_runs, get_settings, get_store
from master_app.ui.results_view import results_ui

logger = logging.getLogger(__name__)

PAGE_SIZE = 50


def task_picker_ui(tasks: list[TaskRecord]) -> TaskRecord | None:
    """The task table and a picker; returns the task to open."""
    frame = pd.DataFrame(task_rows(tasks))
    st.dataframe(frame.style.map(status_style, subset=["status"]), hide_index=True)
    labels = {f"{t.id} · {t.status} · {t.command[:50]}": t
              for t in tasks}
    choice = st.selectbox("Open a task", list(labels), index=None, key="history_pick",
                          placeholder="Choose a task to see its plan and results")
    return labels[choice] if choice else None


def task_actions_ui(task: TaskRecord) -> None:
    """Re-run a task (a new task with the same subtasks) or resume an unfinished one."""
    runs = get_runs()
    active = runs.get(task.id)
    cols = st.columns(2)
    if cols[0].button("Re-run", key=f"rerun_{task.id}"):
        try:
            new_id, total, factory = jobs_api.rerun_task(task.id, get_store(), get_settings())
        except (StoreError, jobs_api.PlanError) as exc:
            st.error(f"Not re-run: {exc}")
        else:
            runs.start(new_id, total, factory)
            st.session_state["run_task_id"] = new_id
            st.success(f"Started task `{new_id}`; follow it on the **Run a task** page.")
    resumable = not task.status.finished and (active is None or not active.running)
    if cols[1].button("Resume", key=f"resume_{task.id}", disabled=not resumable,
                      help="Only unfinished tasks that no run is working on can resume."):
        try:
            task_id, total, factory = jobs_api.resume_run(task.id, get_store(), get_settings())
        except StoreError as exc:
            st.error(f"Not resumed: {exc}")
        else:
            runs.start(task_id, total, factory)
            st.session_state["run_task_id"] = task_id
            st.success(f"Resumed task `{task_id}`; follow it on the **Run a task** page.")


def task_detail_ui(task: TaskRecord) -> None:
    """One task: summary, plan, actions, results and failures."""
    st.subheader(f"Task `{task.id}`")
    cols = st.columns(4)
    cols[0].metric("Status", str(task.status))
    cols[1].metric("Duration", duration(task))
    cols[2].metric("Subtasks", task.subtask_count)
    cols[3].metric("Created", task.created_at.strftime("%H:%M:%S"))
    st.markdown(f"**Command:** {task.command}")
    if task.error:
        st.error(f"The task failed: {task.error}")
    with st.expander("Plan", expanded=True):
        st.json(task.plan)
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
    if st.button("Resume all unfinished", key="resume_all"):
        for task in idle:
            try:
                task_id, total, factory = jobs_api.resume_run(task.id, store, get_settings())
            except StoreError as exc:
                st.error(f"Task {task.id} not resumed: {exc}")
                continue
            runs.start(task_id, total, factory)
        st.success(f"Resumed {len(idle)} task(s).")


def history_page() -> None:
    """The page body."""
    st.title("History")
    try:
        tasks = get_store().list_tasks(limit=PAGE_SIZE)
    except StoreError as exc:
        st.error(f"The job store cannot be read: {exc}")
        return
    if not tasks:
        st.info("No tasks yet: run one on the **Run a task** page.")
        return
    st.button("Refresh", key="history_refresh")
    unfinished_ui()
    task = task_picker_ui(tasks)
    if task is not None:
        st.divider()
        task_detail_ui(task)
