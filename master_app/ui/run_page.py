"""The Run a task page: command, data, plan (editable, shown before it runs), Run, progress.

Session state keys (one browser session):

- ``run_dataset``: the loaded :class:`~master_app.intake.Dataset` (or None) and its file key
- ``run_plan``: the plan proposed by the planner, with the planner's name and reason
- ``run_task_id``: the task this session started last (its background run is in
  :func:`~master_app.ui.resources.get_runs`)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from database.store import StoreError
from master_app.ui import jobs_api
from master_app.ui.resources import get_runs, get_settings, get_store
from master_app.ui.results_view import results_ui
from master_app.ui.run_state import RunSnapshot

logger = logging.getLogger(__name__)

EXAMPLES = {
    "Classify support tickets": "classify as billing / bug / feature",
    "Sentiment per row": "sentiment",
    "Embed every row": "embed",
    "Python over a range": "run python over range(20): RESULT = INPUT ** 2",
    "Diagnostics (no-op)": "noop 8 sleep 50",
}
POLL_S = 0.5


def command_ui() -> str:
    """The command box with examples to start from; returns the command."""
    example = st.selectbox(
        "Start from an example", ["(write my own)", *EXAMPLES], key="run_example"
    )
    if example in EXAMPLES and st.session_state.get("run_example_used") != example:
        st.session_state["run_command"] = EXAMPLES[example]
        st.session_state["run_example_used"] = example
    command: str = st.text_area(
        "What should the grid do?",
        key="run_command",
        height=80,
        placeholder="e.g. classify as billing / bug / feature",
    )
    return command.strip()


def upload_ui() -> Any:
    """File upload (CSV, TXT, JSONL) with a preview; returns the Dataset or None."""
    upload = st.file_uploader(
        "Data (CSV, TXT one item a line, or JSONL)", type=["csv", "txt", "jsonl", "ndjson"],
        key="run_upload",
    )
    if upload is None:
        st.session_state.pop("run_dataset", None)
        return None
    file_key = (upload.name, upload.size, getattr(upload, "file_id", None))
    cached = st.session_state.get("run_dataset")
    if cached is None or cached[0] != file_key:
        settings = get_settings()
        try:
            dataset = jobs_api.load_dataset(
                upload.getvalue(), upload.name,
                max_bytes=settings.max_upload_bytes, max_rows=settings.max_rows,
            )
        except jobs_api.DataError as exc:
            st.error(f"Cannot use {upload.name}: {exc}")
            st.session_state.pop("run_dataset", None)
            return None
        st.session_state["run_dataset"] = (file_key, dataset)
        st.session_state.pop("run_plan", None)  # a plan was made for other data
    dataset = st.session_state["run_dataset"][1]
    st.caption(f"{upload.name}: {len(dataset):,} rows, columns {', '.join(dataset.columns)}")
    st.dataframe(dataset.frame.head(20), hide_index=True, height=220)
    return dataset


def planner_ui(command: str, dataset: Any) -> None:
    """The Plan button: asks the planner and keeps the proposal in session state."""
    settings = get_settings()
    requested = None
    if settings.gemini_api_key:
        choice = st.radio("Planner", ["Gemini", "local"], horizontal=True, key="run_planner",
                          help="Gemini reads the command; the local planner knows a small "
                          "command language and needs no network.")
        requested = "local" if choice == "local" else "gemini"
    if st.button("Plan", type="primary", key="run_plan_btn"):
        if not command:
            st.warning("Type what the grid should do first (or pick an example).")
            return
        try:
            workers = get_store().list_workers()
            planner, reason = jobs_api.choose_planner(settings, requested)
            with st.spinner(f"Planning with the {planner.name} planner..."):
                plan = planner.plan(command, dataset.summary() if dataset else None, workers)
        except jobs_api.PlanError as exc:
            st.error(f"No plan: {exc}")
            st.session_state.pop("run_plan", None)
            return
        except StoreError as exc:
            st.error(f"The registry cannot be read: {exc}")
            return
        generation = st.session_state.get("run_plan_gen", 0) + 1
        st.session_state["run_plan_gen"] = generation
        st.session_state["run_plan"] = {
            "plan": plan, "planner": planner.name, "reason": reason,
            "command": command, "gen": generation,
        }


def plan_editor_ui(proposal: dict[str, Any], dataset: Any) -> Any:
    """The plan before it runs, with operation, parameters and shard count editable.

    Returns the edited, validated plan, or None (with the error shown) when it is invalid.
    """
    plan = proposal["plan"]
    gen = proposal["gen"]
    st.subheader("Plan")
    st.caption(f"Planner: **{proposal['planner']}** — {proposal['reason']}")
    if plan.explanation:
        st.info(plan.explanation)
    operations = jobs_api.plannable_operations()
    op_now = str(plan.operation)
    cols = st.columns(3)
    operation = cols[0].selectbox(
        "Operation", operations, index=operations.index(op_now) if op_now in operations else 0,
        key=f"plan_op_{gen}",
    )
    text_column = plan.text_column
    if dataset is not None:
        columns = dataset.columns
        text_column = cols[1].selectbox(
            "Text column", columns,
            index=columns.index(plan.text_column) if plan.text_column in columns else 0,
            key=f"plan_col_{gen}",
        )
    suggested = jobs_api.suggested_shards(plan, dataset, get_store())
    editable = jobs_api.shards_editable(plan)
    shard_count = cols[2].number_input(
        "Shards", min_value=1, max_value=10_000, value=suggested, step=1,
        key=f"plan_shards_{gen}", disabled=not editable,
        help="How many subtasks the data is split into (spread over the workers)."
        if editable else "One subtask per input: change the inputs in the parameters.",
    )
    params_text = st.text_area(
        "Parameters (JSON)", json.dumps(plan.params, indent=2), height=140,
        key=f"plan_params_{gen}",
    )
    try:
        params = json.loads(params_text or "{}")
        if not isinstance(params, dict):
            raise ValueError("the parameters must be a JSON object {...}")
    except (json.JSONDecodeError, ValueError) as exc:
        st.error(f"Parameters are not valid JSON: {exc}")
        return None
    data = plan.model_dump(mode="json")
    data.update(
        operation=operation, params=params, text_column=text_column,
        shard_count=int(shard_count) if editable else None, shard_size=None,
    )
    if operation != op_now:
        data["combine"] = None  # let the new operation pick its own way to combine
    try:
        edited = jobs_api.parse_plan(data)
        edited.check(dataset.summary() if dataset is not None else None)
    except jobs_api.PlanError as exc:
        st.error(f"The edited plan cannot run: {exc}")
        return None
    return edited


def start_run(command: str, plan: Any, dataset: Any) -> str | None:
    """Persist the task and start it in the background; returns the task id."""
    try:
        task_id, total, factory = jobs_api.prepare_run(
            command, plan, dataset, get_store(), get_settings()
        )
    except (jobs_api.PlanError, jobs_api.DataError, StoreError) as exc:
        st.error(f"Not started: {exc}")
        return None
    get_runs().start(task_id, total, factory)
    st.session_state["run_task_id"] = task_id
    return task_id


def progress_ui(snap: RunSnapshot[Any]) -> None:
    """Progress bar, live counts and the per-worker lanes of a running task."""
    label = f"{snap.done} of {snap.total} shards done"
    if snap.failed:
        label += f", {snap.failed} failing"
    st.progress(snap.fraction, text=label)
    cols = st.columns(3)
    cols[0].metric("Results", snap.done)
    cols[1].metric("Failed so far" if snap.running else "Failed", snap.failed)
    cols[2].metric("Elapsed", f"{snap.elapsed_s:.1f}s")
    if snap.lane_rows:
        st.markdown("**Workers** (shard numbers by state)")
        st.dataframe(pd.DataFrame(snap.lane_rows), hide_index=True)


def _live_run_ui(task_id: str) -> None:
    """Polls the background run; when it ends, reruns the page to show the results."""
    run = get_runs().get(task_id)
    if run is None:
        return
    snap = run.snapshot()
    st.markdown(f"**Task** `{task_id}` — running")
    progress_ui(snap)
    if st.button("Cancel", key="run_cancel", disabled=snap.cancelling):
        run.cancel()
        st.warning("Cancelling: subtasks in flight finish or time out, no new ones start.")
    if not snap.running:
        st.rerun()


#: Reruns on its own every ``POLL_S`` seconds while the page shows a running task.
live_run_ui: Callable[[str], None] = st.fragment(run_every=POLL_S)(_live_run_ui)


def finished_run_ui(task_id: str) -> None:
    """The outcome of this session's last run: error if it crashed, then its results."""
    run = get_runs().get(task_id)
    if run is not None:
        snap = run.snapshot()
        if snap.error:
            st.error(f"The run stopped with an error: {snap.error}")
        progress_ui(snap)
    results_ui(task_id, key=f"run_{task_id}")


def run_page() -> None:
    """The page body.

    The form is rendered on every run, even while a task runs (Streamlit forgets the
    state of widgets a run does not render); only the progress section below it polls.
    """
    st.title("Run a task")
    task_id = st.session_state.get("run_task_id")
    run = get_runs().get(task_id) if task_id else None
    active = run is not None and run.running
    left, right = st.columns([1, 1])
    with left:
        command = command_ui()
        dataset = upload_ui()
    with right:
        planner_ui(command, dataset)
        proposal = st.session_state.get("run_plan")
        edited = None
        if proposal is not None:
            if proposal["command"] != command:
                st.caption("The command changed since this plan: press **Plan** again.")
            edited = plan_editor_ui(proposal, dataset)
        if edited is not None and st.button(
            "Run", type="primary", key="run_go", disabled=active,
            help="One task at a time per session: wait for the current one or cancel it."
            if active else None,
        ):
            if start_run(command, edited, dataset) is not None:
                st.rerun()
    if task_id:
        st.divider()
        if active:
            live_run_ui(task_id)
        else:
            st.subheader("Last run")
            finished_run_ui(task_id)
