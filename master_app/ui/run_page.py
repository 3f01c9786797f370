"""The Run a task page: command, data, plan (as cards, editable, shown before it runs), Run,
the live view, the results.

Session state keys (one browser session); they outlive a visit to another page:

- ``run_command`` (the command box; kept in ``_run_command`` while another page shows)
- ``run_dataset``: the loaded data (:class:`LoadedData`), kept until another file replaces
  it or the person removes it
- ``run_plan``: the plan proposed by the planner (or loaded from a file), with the command,
  data and planner it was made for: if any of them changes, the plan is stale and Run is
  disabled until the person plans again
- ``run_task_id``: the task this session started last (its background run is in
  :func:`~master_app.ui.resources.get_runs`)
"""

from __future__ import annotations

import json
import logging
from typing import Any

import streamlit as st

from database.store import StoreError
from master_app.ui import jobs_api
from master_app.ui.auth import can_operate
from master_app.ui.formatting import error_markdown
from master_app.ui.plan_view import plan_json_editor_ui, plan_preview_ui
from master_app.ui.resources import get_runs, get_settings, get_store
from master_app.ui.run_data import LoadedData, upload_ui
from master_app.ui.run_progress import finished_run_ui, live_run_ui

logger = logging.getLogger(__name__)

#: Commands to start from: the local planner's own and the four tasks of issue 11.
EXAMPLES = {
    "Classify support tickets (upload examples/tickets.csv)":
        "classify as billing / bug / feature",
    "Sentiment per row": "sentiment",
    "Embed every row": "embed",
    "Python over a range": "run python over range(20): RESULT = INPUT ** 2",
    "Hello from NADG (one python subtask)":
        "Create a Python script that prints 'Hello from NADG'",
    "Count the primes below 20 million (python over ranges + a sum)":
        "count the primes below 20 million",
    "Three taglines per product (Gemini; upload a product CSV)":
        "write three taglines for each product in this CSV",
    "An outline of five sections, merged (Gemini)":
        "an outline of five sections on federated learning, then merge them",
    "Diagnostics (no-op)": "noop 8 sleep 50",
}
#: Widget keys whose values survive a visit to another page.
KEPT_WIDGETS = ("run_command", "run_example", "run_planner", "run_advanced")


def _restore_widgets() -> None:
    """Put back the values of :data:`KEPT_WIDGETS` that Streamlit dropped while another
    page was shown (it forgets the state of widgets a run does not draw)."""
    for key in KEPT_WIDGETS:
        kept = f"_{key}"
        if key not in st.session_state and kept in st.session_state:
            st.session_state[key] = st.session_state[kept]


def _keep_widgets() -> None:
    for key in KEPT_WIDGETS:
        if key in st.session_state:
            st.session_state[f"_{key}"] = st.session_state[key]


def command_ui() -> str:
    """The command box with examples to start from; returns the command."""
    pending = st.session_state.pop("_run_command_next", None)
    if pending is not None:  # set by a loaded plan file (before the box is drawn)
        st.session_state["run_command"] = pending
    example = st.selectbox(
        "Start from an example", ["(write my own)", *EXAMPLES], key="run_example",
        help="Fills the command box; the Gemini examples need GEMINI_API_KEY on the master.",
    )
    if example in EXAMPLES and st.session_state.get("run_example_used") != example:
        st.session_state["run_command"] = EXAMPLES[example]
        st.session_state["run_example_used"] = example
    command: str = st.text_area(
        "What should the grid do?",
        key="run_command",
        height=80,
        placeholder="e.g. classify as billing / bug / feature",
        help="Plain words. Without GEMINI_API_KEY the local planner understands a small "
        "command language (classify as A / B, sentiment, embed, run python over "
        "range(N): CODE, ...).",
    )
    return command.strip()


def _data_key(loaded: LoadedData | None) -> str | None:
    return loaded.key if loaded is not None else None


def planner_choice() -> str | None:
    """The planner the person asked for (None: the master's default)."""
    if not get_settings().gemini_api_key:
        return None
    choice = st.radio("Planner", ["Gemini", "local"], horizontal=True, key="run_planner",
                      help="Gemini reads the command; the local planner knows a small "
                      "command language and needs no network.")
    return "local" if choice == "local" else "gemini"


def _keep_plan(planned: Any, command: str, loaded: LoadedData | None,
               requested: str | None) -> None:
    generation = st.session_state.get("run_plan_gen", 0) + 1
    st.session_state["run_plan_gen"] = generation
    st.session_state["run_plan"] = {
        "plan": planned.plan, "planner": planned.planner, "reason": planned.reason,
        "command": command, "data": _data_key(loaded), "requested": requested,
        "gen": generation,
    }


def planner_ui(command: str, loaded: LoadedData | None, requested: str | None) -> None:
    """The Plan button: asks the planner and keeps the proposal in session state."""
    if st.button("Plan", type="primary", key="run_plan_btn",
                 help="Shows what will run, as cards, before anything is sent."):
        if not command:
            st.warning("Type what the grid should do first (or pick an example).")
            return
        dataset = loaded.dataset if loaded is not None else None
        try:
            with st.spinner("Planning..."):  # over the live workers, as the CLI plans
                planned = jobs_api.plan_task(command, dataset, requested, get_store(),
                                             get_settings())
        except jobs_api.PlanError as exc:
            st.error(error_markdown(f"No plan: {exc}"))
            st.session_state.pop("run_plan", None)
            return
        except StoreError as exc:
            st.error(f"The registry cannot be read: {exc}")
            return
        _keep_plan(planned, command, loaded, requested)


def plan_file_ui(loaded: LoadedData | None) -> None:
    """Load a plan saved before (a plan file from Download plan or ``--save-plan``)."""
    with st.expander("Load a saved plan"):
        upload = st.file_uploader(
            "Plan file (JSON)", type=["json"], key="run_plan_file",
            help="A plan downloaded here or written by `run --save-plan`: runs with no "
            "planner call. Its command replaces the one above.")
        if upload is None:
            return
        seen = (upload.name, upload.size, getattr(upload, "file_id", None))
        if st.session_state.get("_run_plan_file_seen") == seen:
            return
        st.session_state["_run_plan_file_seen"] = seen
        dataset = loaded.dataset if loaded is not None else None
        try:
            planned = jobs_api.plan_upload(upload.getvalue(), upload.name, dataset,
                                           get_store(), get_settings())
        except jobs_api.PlanError as exc:
            st.error(error_markdown(f"Cannot use this plan file: {exc}"))
            return
        _keep_plan(planned, planned.command, loaded, None)
        st.session_state["_run_command_next"] = planned.command
        st.rerun()


def stale_reason(proposal: dict[str, Any], command: str, loaded: LoadedData | None,
                 requested: str | None) -> str | None:
    """Why the plan shown is not the plan of what is on the page now (None: it is).

    Any edit of the command, the data or the planner choice makes it stale.
    """
    changed = []
    if proposal["command"] != command:
        changed.append("the command")
    if proposal["data"] != _data_key(loaded):
        changed.append("the data")
    if proposal.get("requested") is not None and proposal["requested"] != requested:
        changed.append("the planner")
    if not changed:
        return None
    return " and ".join(changed) + " changed since this plan"


def plan_editor_ui(proposal: dict[str, Any], loaded: LoadedData | None) -> Any:
    """The plan before it runs: cards; operation, text column and shard count editable;
    the parameters and the whole plan as JSON behind the "advanced" toggle.

    Returns the edited, validated plan, or None (with the error shown) when it is invalid.
    """
    plan = proposal["plan"]
    gen = proposal["gen"]
    summary = loaded.summary if loaded is not None else None
    dataset = loaded.dataset if loaded is not None else None
    st.subheader("Plan")
    st.caption(f"Planner: **{proposal['planner']}** — {proposal['reason']}")
    if plan.explanation:
        st.info(plan.explanation)
    advanced = st.toggle("Advanced: edit the plan as JSON", key="run_advanced",
                         help="The plan's parameters, and the whole plan for a plan of "
                         "listed subtasks, as JSON; checked before Run.")
    if not plan.is_map:  # listed subtasks: the whole plan is edited as JSON
        if advanced:
            return _previewed(plan_json_editor_ui(plan, f"plan_json_{gen}", summary), summary)
        return _previewed(plan, summary)
    operations = jobs_api.plannable_operations()
    op_now = str(plan.operation)
    cols = st.columns(3)
    operation = cols[0].selectbox(
        "Operation", operations, index=operations.index(op_now) if op_now in operations else 0,
        key=f"plan_op_{gen}", help="What each subtask does to its rows.",
    )
    text_column = plan.text_column
    if dataset is not None:
        columns = dataset.columns
        text_column = cols[1].selectbox(
            "Text column", columns,
            index=columns.index(plan.text_column) if plan.text_column in columns else 0,
            key=f"plan_col_{gen}", help="The column whose text the workers read.",
        )
    suggested = jobs_api.suggested_shards(plan, dataset, get_store())
    editable = jobs_api.shards_editable(plan)
    shard_count = cols[2].number_input(
        "Shards", min_value=1, max_value=10_000, value=suggested, step=1,
        key=f"plan_shards_{gen}", disabled=not editable,
        help="How many subtasks the data is split into (spread over the workers)."
        if editable else "One subtask per input: change the inputs in the parameters.",
    )
    params_text = json.dumps(plan.params, indent=2)
    if advanced:
        params_text = st.text_area(
            "Parameters (JSON)", params_text, height=140, key=f"plan_params_{gen}",
            help="The operation's parameters, e.g. the labels of classify.",
        )
    try:
        params = json.loads(params_text or "{}")
        if not isinstance(params, dict):
            raise ValueError("the parameters must be a JSON object {...}")
    except (json.JSONDecodeError, ValueError) as exc:
        st.error(f"The parameters are not valid JSON: {exc}")
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
        edited.check(summary)
    except jobs_api.PlanError as exc:
        st.error(error_markdown(f"The edited plan cannot run: {exc}"))
        return None
    return _previewed(edited, summary)


def _previewed(plan: Any, summary: Any) -> Any:
    """The plan's cards (:mod:`master_app.ui.plan_view`); the plan when the live grid can
    run it, else None with the reasons shown (so Run is not offered)."""
    if plan is None:
        return None
    problems = plan_preview_ui(plan, summary, get_store().list_workers(),
                               gemini_ready=bool(get_settings().gemini_api_key))
    return None if problems else plan


def start_run(command: str, plan: Any, loaded: LoadedData | None) -> str | None:
    """Persist the task and start it in the background; returns the task id."""
    dataset = loaded.dataset if loaded is not None else None
    try:
        with st.spinner("Storing the task..."):
            task_id, total, factory = jobs_api.prepare_run(
                command, plan, dataset, get_store(), get_settings()
            )
    except (jobs_api.PlanError, jobs_api.DataError, StoreError) as exc:
        st.error(error_markdown(f"Not started: {exc}"))
        return None
    get_runs().start(task_id, total, factory)
    st.session_state["run_task_id"] = task_id
    return task_id


def run_page() -> None:
    """The page body.

    The form is rendered on every run, even while a task runs (Streamlit forgets the
    state of widgets a run does not render); only the progress section below it polls.
    """
    st.title("Run a task")
    if not can_operate():
        st.info("Running tasks is for operators: you are signed in as a viewer.")
        return
    _restore_widgets()
    task_id = st.session_state.get("run_task_id")
    run = get_runs().get(task_id) if task_id else None
    active = run is not None and run.running
    left, right = st.columns([1, 1])
    with left:
        command = command_ui()
        loaded = upload_ui()
    with right:
        requested = planner_choice()
        planner_ui(command, loaded, requested)
        plan_file_ui(loaded)
        proposal = st.session_state.get("run_plan")
        edited = None
        stale = None
        if proposal is not None:
            stale = stale_reason(proposal, command, loaded, requested)
            if stale:
                st.warning(f"The plan is out of date: {stale}. Press **Plan** again "
                           "to run what is on the page now.")
            else:
                edited = plan_editor_ui(proposal, loaded)
        if proposal is not None:
            cols = st.columns([1, 1])
            blocked = active or edited is None
            why = ("One task at a time per session: wait for the current one or cancel it."
                   if active else "Plan again first: the plan is out of date." if stale
                   else "The plan cannot run as it is (see above)." if edited is None
                   else "Store the task and send its subtasks to the workers.")
            if cols[0].button("Run", type="primary", key="run_go", disabled=blocked,
                              help=why):
                if start_run(command, edited, loaded) is not None:
                    _keep_widgets()
                    st.rerun()
            if edited is not None:
                cols[1].download_button(
                    "Download plan",
                    jobs_api.plan_download(command, edited,
                                           loaded.dataset if loaded else None,
                                           proposal["planner"],
                                           summary=loaded.summary if loaded else None),
                    file_name="plan.json", mime="application/json", key="run_plan_download",
                    help="The validated plan as a file: load it here later, or run it "
                    "with `python -m master_app run --plan plan.json`.")
    _keep_widgets()
    if task_id:
        st.divider()
        if active:
            live_run_ui(task_id)
        else:
            st.subheader("Last run")
            finished_run_ui(task_id)
