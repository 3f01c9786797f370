"""Mixed grids: one task on push workers (HTTP) and pull workers (leases) together.

Both paths go through the same subtask leases in the store:

* a master that takes a task holds all its open subtasks (``lease_owner = master:…``,
  :func:`master_app.service.leases.task_lease`), splits them by capacity (the push
  workers' and the live pull workers' ``max_concurrency``), releases the pull share (which
  wakes idle pull workers) and dispatches the rest over HTTP as before;
* pull workers claim the rest (``FOR UPDATE SKIP LOCKED``) and complete it in the store;
* the master polls the store until every subtask of the pull share has an outcome. When
  its push workers are idle and part of the pull share has stayed unclaimed for
  ``steal_after_s`` (the pull workers are full, or gone), it holds and dispatches that
  part too: work goes where capacity is.

Pull workers (``pull://NAME`` in the registry) are never sent HTTP requests. On a store
without leases (SQLite) or with no live pull worker this is the plain push dispatch; the
subtasks stay held, so a pull worker joining mid-run does not take them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import timedelta

from database.leases import LeaseStore, is_pull_url, lease_store
from database.models import SubtaskStatus, TaskDetail, WorkerNode, utcnow
from database.store import Store
from master_app.dispatch import Dispatcher, DispatchReport, EventCallback, OutcomeSink
from master_app.service.leases import HOLD_S, MASTER_ID
from nexus_common.protocol import Subtask

logger = logging.getLogger(__name__)

#: A pull worker that has not called the store for this long is not counted as capacity.
PULL_FRESH_S = 30.0
OPEN = (SubtaskStatus.PENDING, SubtaskStatus.RUNNING)


def is_pull(worker: WorkerNode) -> bool:
    """True for a pull worker (registered as ``pull://NAME``)."""
    return is_pull_url(worker.vm_url)


def split_workers(workers: Sequence[WorkerNode], fresh_s: float = PULL_FRESH_S,
                  ) -> tuple[list[WorkerNode], list[WorkerNode]]:
    """(push workers, pull workers heard from in the last ``fresh_s`` seconds).

    A pull worker cannot be pinged; every claim, extension and completion refreshes its
    ``last_ping``, and an idle one claims at least every few seconds.
    """
    push = [w for w in workers if not is_pull(w)]
    since = utcnow() - timedelta(seconds=fresh_s)
    return push, [w for w in workers if is_pull(w) and w.last_ping is not None
                  and w.last_ping >= since]


def push_count(total: int, push: Sequence[WorkerNode], pull: Sequence[WorkerNode]) -> int:
    """How many of ``total`` subtasks go to the push workers: their share of capacity."""
    push_cap = sum(w.max_concurrency for w in push)
    pull_cap = sum(w.max_concurrency for w in pull)
    if not pull_cap:
        return total
    if not push_cap:
        return 0
    return round(total * push_cap / (push_cap + pull_cap))


def merge_reports(into: DispatchReport, more: DispatchReport) -> None:
    """Add a later dispatch round's results and counters to ``into``."""
    into.results.update(more.results)
    into.winners.update(more.winners)
    for sid in more.results:
        into.failures.pop(sid, None)
    for sid, failure in more.failures.items():
        if sid not in into.results:
            into.failures[sid] = failure
    into.attempts += more.attempts
    into.retries += more.retries
    into.hedges += more.hedges
    into.cancelled = into.cancelled or more.cancelled
    into.deadline_passed = into.deadline_passed or more.deadline_passed
    into.round_trips_ms += more.round_trips_ms


async def run_shared(store: Store, dispatcher: Dispatcher, detail: TaskDetail,
                     todo: list[Subtask], workers: Sequence[WorkerNode], *,
                     on_event: EventCallback | None = None, sink: OutcomeSink | None = None,
                     cancel: asyncio.Event | None = None, deadline_s: float | None = None,
                     poll_s: float = 0.2, steal_after_s: float = 2.0,
                     ) -> tuple[TaskDetail, DispatchReport]:
    """Run ``todo`` on push and pull workers; returns the task's detail to finish from
    (the store's, re-read, when pull workers took part) and the push dispatch report."""
    push, pull = split_workers(workers)
    leases = lease_store(store)
    if leases is None or not pull or not todo:
        # every subtask is held for this master already (task_lease), none for pull workers
        report = await dispatcher.run_subtasks(todo, push, on_event=on_event, sink=sink,
                                               cancel=cancel, deadline_s=deadline_s)
        return detail, report
    started = time.monotonic()
    task_id = detail.task.id
    n_push = push_count(len(todo), push, pull)
    held = set(await asyncio.to_thread(leases.hold_subtasks, task_id,
                                       [s.id for s in todo], MASTER_ID, HOLD_S))
    mine = [s for s in todo[:n_push] if s.id in held]
    given = [s.id for s in todo[n_push:] if s.id in held]
    await asyncio.to_thread(leases.release_subtasks, task_id, given, MASTER_ID)
    logger.info("task %s: %d subtasks to %d push workers, %d left to %d pull workers",
                task_id, len(mine), len(push), len(todo) - len(mine), len(pull))
    report = DispatchReport()
    if mine and push:
        report = await dispatcher.run_subtasks(mine, push, on_event=on_event, sink=sink,
                                               cancel=cancel, deadline_s=deadline_s)
    by_id = {s.id: s for s in todo}
    rest = {s.id for s in todo} - {s.id for s in mine}
    unclaimed_since: dict[str, float] = {}
    while rest:
        if cancel is not None and cancel.is_set():
            report.cancelled = True
            break
        if deadline_s is not None and time.monotonic() - started > deadline_s:
            report.deadline_passed = True
            break
        open_ = {s.id: s.status for s in await asyncio.to_thread(
            store.subtasks_by_status, task_id, OPEN) if s.id in rest}
        rest = set(open_)
        now = time.monotonic()
        waiting = [sid for sid, st in open_.items() if st is SubtaskStatus.PENDING]
        for sid in list(unclaimed_since):
            if sid not in waiting:
                del unclaimed_since[sid]
        for sid in waiting:
            unclaimed_since.setdefault(sid, now)
        stale = [sid for sid in waiting if now - unclaimed_since[sid] >= steal_after_s]
        if push and stale:
            more = await _steal(leases, dispatcher, task_id, [by_id[s] for s in stale], push,
                                on_event, sink, cancel, deadline_s)
            if more is not None:
                merge_reports(report, more)
                continue
        if rest:
            await asyncio.sleep(poll_s)
    report.duration_s = time.monotonic() - started
    return await asyncio.to_thread(store.get_task, task_id), report


async def _steal(leases: LeaseStore, dispatcher: Dispatcher, task_id: str,
                 stale: list[Subtask], push: list[WorkerNode],
                 on_event: EventCallback | None, sink: OutcomeSink | None,
                 cancel: asyncio.Event | None, deadline_s: float | None,
                 ) -> DispatchReport | None:
    """Hold and dispatch pull-share subtasks nobody claimed; None when none could be held."""
    held = set(await asyncio.to_thread(leases.hold_subtasks, task_id, [s.id for s in stale],
                                       MASTER_ID, HOLD_S))
    taken = [s for s in stale if s.id in held]
    if not taken:
        return None
    logger.info("task %s: %d unclaimed subtask(s) go to push workers", task_id, len(taken))
    return await dispatcher.run_subtasks(taken, push, on_event=on_event, sink=sink,
                                         cancel=cancel, deadline_s=deadline_s)
