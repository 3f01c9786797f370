"""The Workers page: the registry as a table, add / remove / drain / ping, latency chart."""

from __future__ import annotations

import asyncio
import logging

import pandas as pd
import streamlit as st

from database.health import HeartbeatReport, HeartbeatSettings, ping_workers
from database.models import WorkerNode, WorkerStatus
from database.store import DuplicateWorker, Store, StoreError
from master_app.ui.formatting import status_style, validate_worker_url, worker_rows
from master_app.ui.resources import get_store

logger = logging.getLogger(__name__)

#: A ping from the page: short timeout, no retry (the person can press again).
PING_SETTINGS = HeartbeatSettings(timeout_s=3.0, retries=0)


def ping(store: Store, workers: list[WorkerNode]) -> HeartbeatReport:
    """Ping ``workers`` concurrently and record each outcome (database.health)."""
    return asyncio.run(ping_workers(store, workers, settings=PING_SETTINGS))


def add_worker_ui(store: Store) -> None:
    """A form that registers a worker by URL (validated before it reaches the store)."""
    with st.form("add_worker", clear_on_submit=False):
        st.markdown("**Add a worker**")
        url = st.text_input("Worker URL", placeholder="http://127.0.0.1:7860", key="add_url")
        name = st.text_input("Name (optional)", key="add_name")
        capacity = st.number_input("Capacity (concurrent subtasks)", 1, 64, 4, key="add_cap")
        submitted = st.form_submit_button("Add worker")
    if not submitted:
        return
    try:
        clean = validate_worker_url(url)
        worker = store.add_worker(clean, name=name.strip() or None, max_concurrency=int(capacity))
    except ValueError as exc:
        st.error(f"Not added: {exc}")
    except DuplicateWorker:
        st.error(f"Not added: {url.strip()} is already registered.")
    except StoreError as exc:
        st.error(f"Not added: {exc}")
    else:
        st.success(f"Added worker {worker.id} ({worker.vm_url}).")


def worker_actions_ui(store: Store, workers: list[WorkerNode]) -> None:
    """Pick a worker and remove, drain, re-activate or ping it."""
    options = {f"{w.id} · {w.label}": w for w in workers}
    choice = st.selectbox("Worker", list(options), key="worker_pick")
    if choice is None:
        return
    worker = options[choice]
    cols = st.columns(4)
    try:
        if cols[0].button("Ping now", key="ping_one"):
            probe = ping(store, [worker]).outcomes[0].probe
            if probe.ok:
                st.success(f"{worker.label} answered in {probe.latency_ms or 0:.0f} ms.")
            else:
                st.warning(f"{worker.label} did not answer: {probe.error}")
        if cols[1].button("Drain", key="drain"):
            store.set_worker_status(worker.id, WorkerStatus.DRAINING)
            st.info(f"{worker.label} is draining: it gets no new subtasks.")
        if cols[2].button("Activate", key="activate"):
            store.set_worker_status(worker.id, WorkerStatus.ACTIVE)
            st.info(f"{worker.label} is active again.")
        if cols[3].button("Remove", key="remove", type="primary"):
            store.remove_worker(worker.id)
            st.success(f"Removed worker {worker.id} ({worker.vm_url}).")
    except StoreError as exc:
        st.error(f"The registry refused: {exc}")


def latency_chart_ui(store: Store, workers: list[WorkerNode]) -> None:
    """Latency over the recent pings of every worker, one line each."""
    frames: list[dict[str, object]] = []
    for w in workers:
        pings = [p for p in store.recent_pings(w.id, limit=50) if p.ok and p.latency_ms]
        frames.extend({"at": p.at, "worker": w.label, "latency ms": p.latency_ms} for p in pings)
    if not frames:
        st.caption("No pings recorded yet: press **Ping all** to take some.")
        return
    data = pd.DataFrame(frames)
    data["at"] = pd.to_datetime(data["at"], utc=True)
    st.line_chart(data, x="at", y="latency ms", color="worker")


def workers_page() -> None:
    """The page body."""
    st.title("Workers")
    try:
        store = get_store()
    except StoreError as exc:
        st.error(f"The registry cannot be opened: {exc}")
        return
    top = st.columns([1, 1, 4])
    if top[0].button("Ping all", key="ping_all"):
        report = ping(store, store.list_workers())
        st.toast(f"Pinged {len(report.outcomes)} workers: {report.alive} answered.")
    top[1].button("Refresh", key="refresh")
    table = st.container()
    left, right = st.columns([3, 2])
    with right:  # first, so a worker added now can be acted on in the same run
        add_worker_ui(store)
    with left:
        workers = store.list_workers()
        if workers:
            st.markdown("**Act on a worker**")
            worker_actions_ui(store, workers)
    workers = store.list_workers()  # after an action, show the registry as it is now
    with table:
        if not workers:
            st.info("No workers registered. Add one with its URL, or start `make up`.")
        else:
            frame = pd.DataFrame(worker_rows(workers))
            styled = frame.style.map(status_style, subset=["status", "circuit"]).format(
                {"latency ms": "{:.1f}"}, na_rep="—")
            st.dataframe(styled, hide_index=True)
    if workers:
        st.subheader("Latency")
        latency_chart_ui(store, workers)
