"""The Workers page: health at a glance, the registry as a sortable table, add / drain /
remove / ping, and a latency chart; it refreshes itself.

Nothing here waits on the network in the script thread except the one ``/health`` probe
of a worker being added (behind a spinner, 3 s at most): **Ping all** and **Ping** run in
a background thread (:func:`get_pinger`) and a fragment polls them, so the page stays
usable while a dead worker takes its full timeout. The live section (numbers, table,
chart, ping status) is a fragment that reruns every :data:`REFRESH_S` seconds while
**Auto-refresh** is on.

A worker URL is probed before it is registered: one that answers is added ``active``,
one that does not is added ``offline`` with a warning saying why (the heartbeat makes it
active once it answers). After a successful add the form is emptied.

Session state keys: ``workers_ping`` (the :class:`PingJob` in flight), ``workers_ping_note``
and ``workers_add_note`` (the last outcome to show), ``workers_add_clear`` (empty the form
on the next run), ``workers_auto`` (the toggle).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import streamlit as st

from database.models import WorkerNode, WorkerStatus, utcnow
from database.store import DuplicateWorker, Store, StoreError
from master_app.ui.auth import can_operate
from master_app.ui.formatting import age, validate_worker_url
from master_app.ui.metrics_view import metrics_expander
from master_app.ui.resources import get_store
from master_app.ui.workers_table import (
    column_config,
    health_summary,
    latency_chart,
    latency_frame,
    worker_frame,
)
from nexus_ops.health import HeartbeatReport, HeartbeatSettings, Probe, ping_workers, probe_once

logger = logging.getLogger(__name__)

#: A ping from the page: short timeout, no retry (the person can press again).
PING_SETTINGS = HeartbeatSettings(timeout_s=3.0, retries=0, deadline_s=10.0)
#: How long the probe of a worker being added may take.
ADD_PROBE_TIMEOUT_S = 3.0
#: The live section's period while Auto-refresh is on, and while a ping is in flight.
REFRESH_S = 5.0
POLL_S = 0.5
#: How long the outcome of a ping stays on screen.
NOTE_TTL_S = 30.0

PING_KEY = "workers_ping"
PING_NOTE_KEY = "workers_ping_note"
ADD_NOTE_KEY = "workers_add_note"
ADD_CLEAR_KEY = "workers_add_clear"
AUTO_KEY = "workers_auto"
FORM_DEFAULTS = {"add_url": "", "add_name": "", "add_cap": 4}


@dataclass(frozen=True)
class PingJob:
    """Pings running in the background for this session."""

    future: Future[HeartbeatReport]
    what: str
    count: int
    started: float


@dataclass(frozen=True)
class Note:
    """An outcome to show: ``kind`` is ``success``, ``warning``, ``error`` or ``info``."""

    kind: str
    text: str
    at: float


def ping(store: Store, workers: Sequence[WorkerNode]) -> HeartbeatReport:
    """Ping ``workers`` concurrently and record each outcome (nexus_ops.health)."""
    return asyncio.run(ping_workers(store, list(workers), settings=PING_SETTINGS))


def check_health(url: str, timeout_s: float = ADD_PROBE_TIMEOUT_S) -> Probe:
    """One ``GET /health`` of ``url`` (the heartbeat's own probe), never raising."""

    async def once() -> Probe:
        async with httpx.AsyncClient(follow_redirects=True,
                                     headers={"User-Agent": "nadg-master"}) as client:
            return await probe_once(client, url, timeout_s)

    return asyncio.run(once())


def _get_pinger() -> ThreadPoolExecutor:
    """The threads that run the page's pings (shared by sessions, made on first use)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="nadg-ui-ping")


get_pinger: Callable[[], ThreadPoolExecutor] = st.cache_resource(show_spinner=False)(_get_pinger)


def ping_in_flight() -> PingJob | None:
    """This session's pings still being waited on, if any."""
    job = st.session_state.get(PING_KEY)
    return job if isinstance(job, PingJob) else None


def start_ping(store: Store, workers: Sequence[WorkerNode], what: str) -> PingJob:
    """Start pinging ``workers`` in the background; the live section polls the job.
    While one is in flight for this session, that one is returned (no second)."""
    running = ping_in_flight()
    if running is not None:
        return running
    job = PingJob(future=get_pinger().submit(ping, store, list(workers)), what=what,
                  count=len(workers), started=time.monotonic())
    st.session_state[PING_KEY] = job
    st.session_state.pop(PING_NOTE_KEY, None)
    return job


def ping_note(job: PingJob) -> Note:
    """What a finished ping job found, in words."""
    try:
        report = job.future.result(timeout=0)
    except Exception as exc:  # the store failed under it: a message, not a traceback
        logger.exception("ping from the Workers page failed")
        return Note("error", f"{job.what}: the registry refused: {exc}", time.monotonic())
    if len(report.outcomes) == 1:
        outcome = report.outcomes[0]
        label = outcome.worker.label
        if outcome.probe.ok:
            return Note("success", f"{label} answered in {outcome.probe.latency_ms or 0:.0f} ms.",
                        time.monotonic())
        return Note("warning", f"{label} did not answer: {outcome.probe.error}. It is "
                               f"{outcome.status_after} now.", time.monotonic())
    dead = [o.worker.label for o in report.outcomes if not o.probe.ok]
    text = (f"Pinged {len(report.outcomes)} workers in {report.duration_s:.1f}s: "
            f"{report.alive} answered")
    if dead:
        return Note("warning", text + "; no answer from " + ", ".join(dead) + ".",
                    time.monotonic())
    return Note("success", text + ".", time.monotonic())


def _show(note: Note | None) -> None:
    if note is not None:
        {"success": st.success, "warning": st.warning, "error": st.error,
         "info": st.info}[note.kind](note.text)


def add_worker_ui(store: Store) -> None:
    """A form that registers a worker by URL: validated, then probed (``GET /health``)."""
    if not can_operate():
        return
    if st.session_state.pop(ADD_CLEAR_KEY, False):  # the last add worked: an empty form
        for key, value in FORM_DEFAULTS.items():
            st.session_state[key] = value
    with st.form("add_worker", clear_on_submit=False):
        st.markdown("**Add a worker**")
        url = st.text_input("Worker URL", placeholder="http://127.0.0.1:7860", key="add_url",
                            help="The worker's base URL; the master checks GET /health "
                                 "before it registers it.")
        name = st.text_input("Name (optional)", key="add_name",
                             help="A short name for tables and logs; the URL when empty.")
        capacity = st.number_input("Capacity (concurrent subtasks)", 1, 64, key="add_cap",
                                   help="How many subtasks the dispatcher sends it at once.")
        submitted = st.form_submit_button("Add worker", type="primary")
    if not submitted:
        _show(st.session_state.pop(ADD_NOTE_KEY, None))
        return
    try:
        clean = validate_worker_url(url)
        if store.find_worker(clean) is not None:
            raise DuplicateWorker(clean)
        with st.spinner(f"Checking {clean}/health ..."):
            probe = check_health(clean)
        status = WorkerStatus.ACTIVE if probe.ok else WorkerStatus.OFFLINE
        worker = store.add_worker(clean, name=name.strip() or None,
                                  max_concurrency=int(capacity), status=status)
        worker = store.record_ping(worker.id, ok=probe.ok, latency_ms=probe.latency_ms,
                                   version=probe.version,
                                   error=None if probe.ok else probe.error)
    except ValueError as exc:
        st.error(f"Not added: {exc}")
        return
    except DuplicateWorker:
        st.error(f"Not added: {url.strip()} is already registered.")
        return
    except StoreError as exc:
        st.error(f"Not added: {exc}")
        return
    if probe.ok:
        note = Note("success", f"Added worker {worker.id} ({worker.vm_url}): it answered in "
                               f"{probe.latency_ms or 0:.0f} ms and is active.", time.monotonic())
    else:
        note = Note("warning", f"Added worker {worker.id} ({worker.vm_url}) as offline: it "
                               f"did not answer GET /health ({probe.error}). It gets no work "
                               "until a ping reaches it (Ping, or the heartbeat).",
                    time.monotonic())
    st.session_state[ADD_NOTE_KEY] = note
    st.session_state[ADD_CLEAR_KEY] = True
    st.rerun()


def worker_actions_ui(store: Store, workers: list[WorkerNode]) -> None:
    """Pick a worker and ping, drain, re-activate or remove it."""
    if not can_operate():
        return
    options = {f"{w.id} · {w.label} ({w.status})": w for w in workers}
    choice = st.selectbox("Worker", list(options), key="worker_pick",
                          help="The worker the buttons below act on.")
    if choice is None:
        return
    worker = options[choice]
    cols = st.columns(4)
    busy = ping_in_flight() is not None
    try:
        if cols[0].button("Ping", key="ping_one", disabled=busy, icon=":material/network_ping:",
                          help="GET /health now (in the background) and record it."):
            start_ping(store, [worker], f"Ping {worker.label}")
        if cols[1].button("Drain", key="drain", icon=":material/pause_circle:",
                          help="Finish what it has; give it no new subtasks."):
            store.set_worker_status(worker.id, WorkerStatus.DRAINING)
            st.info(f"{worker.label} is draining: it gets no new subtasks.")
        if cols[2].button("Activate", key="activate", icon=":material/play_circle:",
                          help="Give it work again (the heartbeat marks it offline if it "
                               "stops answering)."):
            store.set_worker_status(worker.id, WorkerStatus.ACTIVE)
            st.info(f"{worker.label} is active again.")
        if cols[3].button("Remove", key="remove", icon=":material/delete:",
                          help="Forget this worker (its past results stay in History)."):
            store.remove_worker(worker.id)
            st.success(f"Removed worker {worker.id} ({worker.vm_url}).")
    except StoreError as exc:
        st.error(f"The registry refused: {exc}")


def health_ui(workers: list[WorkerNode]) -> None:
    """The numbers at the top: live, offline, draining, median latency, last answer."""
    summary = health_summary(workers)
    cols = st.columns(4)
    cols[0].metric("Live workers", f"{summary.live} of {summary.total}", border=True,
                   help="active or busy: they take work")
    cols[1].metric("Offline · draining", f"{summary.offline} · {summary.draining}",
                   border=True, help="offline missed their pings; draining take no new work")
    cols[2].metric("Median latency", "—" if summary.median_latency_ms is None
                   else f"{summary.median_latency_ms:.0f} ms", border=True,
                   help="of the live workers' last GET /health")
    cols[3].metric("Last answer", age(summary.last_ping), border=True,
                   help="the newest good ping of any worker")


def latency_ui(store: Store, workers: list[WorkerNode]) -> None:
    """Latency over the recent pings of every worker, one line each."""
    frame = latency_frame((w.label, p) for w in workers for p in store.recent_pings(w.id, 50))
    if frame.empty:
        st.caption("No pings recorded yet: press **Ping all** to take some.")
        return
    st.altair_chart(latency_chart(frame), width="stretch")


def ping_status_ui() -> None:
    """The ping in flight (with a spinner) or the outcome of the last one."""
    job = ping_in_flight()
    if job is not None:
        if not job.future.done():
            waited = time.monotonic() - job.started
            with st.status(f"{job.what}: waiting on {job.count} worker(s), {waited:.0f}s "
                           f"so far (at most {PING_SETTINGS.timeout_s:g}s each)...",
                           state="running"):
                st.caption("The page stays usable meanwhile.")
            return
        st.session_state.pop(PING_KEY, None)
        st.session_state[PING_NOTE_KEY] = ping_note(job)
        st.rerun()  # the whole page: table, chart and buttons as the pings left them
    note = st.session_state.get(PING_NOTE_KEY)
    if isinstance(note, Note) and time.monotonic() - note.at < NOTE_TTL_S:
        _show(note)


def _live_section() -> None:
    """Health numbers, ping status, the table and the latency chart: read afresh."""
    try:
        store = get_store()
        workers = store.list_workers()
    except StoreError as exc:
        st.error(f"The registry cannot be read: {exc}")
        return
    ping_status_ui()
    if not workers:
        st.info("No workers registered. Add one with its URL, or start `make up`.")
        return
    health_ui(workers)
    st.dataframe(worker_frame(workers), hide_index=True, column_config=column_config(),
                 placeholder="—", key="workers_table")
    st.caption(f"Read at {utcnow():%H:%M:%S} UTC. Click a column header to sort.")
    st.subheader("Latency")
    latency_ui(store, workers)


def live_section(auto: bool) -> None:
    """:func:`_live_section` as a fragment: polled fast while a ping is in flight, every
    :data:`REFRESH_S` seconds with Auto-refresh on, else only when the page reruns."""
    every = POLL_S if ping_in_flight() is not None else REFRESH_S if auto else None
    st.fragment(run_every=every)(_live_section)()


def workers_page() -> None:
    """The page body."""
    st.title("Workers")
    st.caption("The registry: who can take work, how fast they answer, and what the "
               "master's circuit breakers think of them.")
    try:
        store = get_store()
    except StoreError as exc:
        st.error(f"The registry cannot be opened: {exc}")
        return
    top = st.columns([1.2, 1, 2.6], vertical_alignment="center")
    if can_operate() and top[0].button(
            "Ping all", key="ping_all", icon=":material/network_ping:",
            disabled=ping_in_flight() is not None,
            help="GET /health on every worker, in the background; the outcomes update "
                 "the registry."):
        start_ping(store, store.list_workers(), "Ping all")
    auto = top[1].toggle("Auto-refresh", value=True, key=AUTO_KEY,
                         help=f"Re-read the registry every {REFRESH_S:g} seconds.")
    live = st.container()  # filled last, so it shows what the actions below just did
    if can_operate():
        st.divider()
        left, right = st.columns([3, 2])
        with right:  # first, so a worker added now can be acted on in the same run
            add_worker_ui(store)
        with left:
            workers = store.list_workers()
            if workers:
                st.markdown("**Act on a worker**")
                worker_actions_ui(store, workers)
    metrics_expander(store)
    with live:
        live_section(auto)
