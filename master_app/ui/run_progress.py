"""The task this session runs: its live progress (polled at a bounded rate), Cancel, and
once it ends its results and, for an operator, Resume."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import streamlit as st

from database.store import StoreError
from master_app.ui import jobs_api
from master_app.ui.auth import can_operate
from master_app.ui.live_view import live_ui
from master_app.ui.resources import get_runs, get_settings, get_store
from master_app.ui.results_view import results_ui
from master_app.ui.run_state import RunSnapshot

logger = logging.getLogger(__name__)

#: Seconds between two reads of a running task's progress (a bounded rate: the page's
#: reruns never starve the run, whose thread only takes a lock to fold each event).
POLL_S = 1.0
#: How long a click on Cancel waits for the run to end before the page polls again.
CANCEL_WAIT_S = 2.0


def resume_ui(task_id: str) -> None:
    """Resume a cancelled or failed task: only its subtasks without a result run."""
    if st.button("Resume", key="run_resume", type="primary",
                 help="Sends only the subtasks without a result; the results so far stay."):
        try:
            _, total, factory = jobs_api.resume_run(task_id, get_store(), get_settings())
        except StoreError as exc:
            st.error(f"Not resumed: {exc}")
            return
        get_runs().start(task_id, total, factory)
        st.rerun()


def _live_run_ui(task_id: str) -> None:
    """Reads the background run's progress; when it ends, reruns the page for results."""
    run = get_runs().get(task_id)
    if run is None:
        return
    snap = run.snapshot()
    state = "cancelling" if snap.cancelling else "running"
    st.markdown(f"**Task** `{task_id}` — {state}")
    if st.button("Cancel", key="run_cancel", disabled=snap.cancelling,
                 help="Stops the task at once: nothing new is sent and the subtasks in "
                 "flight are called back. It can be resumed later."):
        run.cancel()
        run.join(timeout=CANCEL_WAIT_S)  # a cancelled run ends in a moment: show it at once
        snap = run.snapshot()
    live_ui(with_pull_lanes(snap))
    if not snap.running:
        st.rerun()


def with_pull_lanes(snap: RunSnapshot[Any]) -> RunSnapshot[Any]:
    """``snap`` with a lane per pull worker too (mixed grids: push and pull side by side)."""
    try:
        rows = jobs_api.pull_lane_rows(snap.task_id, get_store(), get_settings())
    except Exception:  # the lanes are a view: a store hiccup must not break the page
        logger.exception("could not read the pull workers' progress of %s", snap.task_id)
        return snap
    return dataclasses.replace(snap, lane_rows=[*snap.lane_rows, *rows]) if rows else snap


#: Reruns on its own every ``POLL_S`` seconds while the page shows a running task.
live_run_ui: Callable[[str], None] = st.fragment(run_every=POLL_S)(_live_run_ui)


def finished_run_ui(task_id: str) -> None:
    """The outcome of this session's last run: error if it crashed, then its results."""
    run = get_runs().get(task_id)
    detail = result = None
    if run is not None:
        snap = run.snapshot()
        if snap.error:
            st.error(f"The run stopped with an error: {snap.error}")
        live_ui(with_pull_lanes(snap))
        finished = snap.outcome
        detail = getattr(finished, "detail", None)  # the run's own read, handed on
        result = getattr(finished, "result", None)
        outcome = getattr(finished, "outcome", None)
        if outcome is not None and not outcome.ok and can_operate():
            resume_ui(task_id)
    results_ui(task_id, key=f"run_{task_id}", detail=detail, result=result)
