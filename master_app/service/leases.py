"""Several masters on one store: task leases, and adopting what a dead master left.

A master runs a task only while it holds the task's lease (``tasks.lease_owner`` and
``lease_expires_at``), renewed every third of :attr:`MasterSettings.task_lease_s` while the
run goes on. A second master asking for the same task is refused, so two masters never
run one task at once. A master that dies stops renewing; once its lease has expired, any
master that is up (:func:`serve`, ``python -m master_app serve``) adopts the task and runs
what has no result yet (the store keeps the first completed result of each subtask).

On SQLite (one process, nothing shared) there are no leases: every call here is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from database.leases import LeaseStore, lease_store
from database.models import TaskStatus
from database.store import Store, StoreError

logger = logging.getLogger(__name__)

#: A master's hold on the subtasks of a task it runs (another master takes it over when it
#: adopts the task; pull workers get their share released, not by expiry).
HOLD_S = 3600.0
#: This process's name as a lease owner: ``master:HOST:PID:RANDOM``.
MASTER_ID = f"master:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class TaskHeld:
    """The outcome of asking for a task's lease: truthy when this master holds it."""

    def __init__(self, held: bool, leases: LeaseStore | None) -> None:
        self.held = held
        self.leases = leases
        self.lost = False  #: set when a renewal found the lease gone

    def __bool__(self) -> bool:
        return self.held


@asynccontextmanager
async def task_lease(store: Store, task_id: str, lease_s: float,
                     owner: str = MASTER_ID) -> AsyncIterator[TaskHeld]:
    """Hold ``task_id``'s lease for the body (renewed every ``lease_s / 3``), then release
    it. Yields a falsy :class:`TaskHeld` when another live master holds it; always truthy
    on a store without leases."""
    leases = lease_store(store)
    if leases is None:
        yield TaskHeld(True, None)
        return
    held = TaskHeld(await asyncio.to_thread(leases.acquire_task, task_id, owner, lease_s),
                    leases)
    if not held:
        logger.info("task %s is held by another master; not running it here", task_id)
        yield held
        return
    # every open subtask is the master's until it hands the pull workers their share
    # (master_app.service.pull), so none is claimed before the master has split the work
    await asyncio.to_thread(leases.hold_subtasks, task_id, None, owner, HOLD_S)
    renewer = asyncio.create_task(_renew(leases, task_id, owner, lease_s, held))
    try:
        yield held
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        try:
            await asyncio.to_thread(leases.release_task, task_id, owner)
        except StoreError as exc:  # it expires by itself
            logger.warning("could not release task %s: %s", task_id, exc)


async def _renew(leases: LeaseStore, task_id: str, owner: str, lease_s: float,
                 held: TaskHeld) -> None:
    while True:
        await asyncio.sleep(lease_s / 3)
        try:
            if not await asyncio.to_thread(leases.acquire_task, task_id, owner, lease_s):
                held.lost = True
                logger.warning("task %s: lost its lease (finished, or adopted by another "
                               "master after this one stalled)", task_id)
                return
        except StoreError as exc:
            logger.warning("task %s: could not renew its lease: %s", task_id, exc)


RunTask = Callable[[str], Coroutine[Any, Any, object]]


async def serve(store: Store, run: RunTask, stop: asyncio.Event, *, lease_s: float,
                poll_s: float = 1.0, max_parallel: int = 4) -> int:
    """Adopt and run unfinished tasks no live master holds until ``stop`` is set.

    A task is adoptable when its lease expired, or when it never had one and has waited
    longer than ``lease_s`` (a submitted task nobody started). ``run(task_id)`` runs one
    (it takes the lease itself, so a task another master grabbed first is skipped).
    Returns how many runs were started. Raises StoreError on a store without leases.
    """
    leases = lease_store(store)
    if leases is None:
        raise StoreError(f"`serve` needs a store that several masters share (Postgres or "
                         f"Supabase), not {store.backend_name}")
    running: dict[str, asyncio.Task[object]] = {}
    started = 0
    logger.info("master %s serving: adopting tasks after a %.0f s lease", MASTER_ID, lease_s)
    while not stop.is_set():
        for done in [t for t, job in running.items() if job.done()]:
            job = running.pop(done)
            if not job.cancelled() and job.exception() is not None:
                logger.error("adopted task %s failed to run: %s", done, job.exception())
        if len(running) < max_parallel:
            try:
                ids = await asyncio.to_thread(leases.adoptable_tasks, lease_s)
            except StoreError as exc:
                logger.warning("could not list adoptable tasks: %s", exc)
                ids = []
            for task_id in ids:
                if task_id in running or len(running) >= max_parallel:
                    continue
                logger.info("adopting task %s", task_id)
                running[task_id] = asyncio.create_task(run(task_id))
                started += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=poll_s)
    if running:
        await asyncio.gather(*running.values(), return_exceptions=True)
    return started


def held_elsewhere_status(status: TaskStatus) -> str:
    """The error a run reports for a task another master holds."""
    return f"task is {status.value} on another master (it holds the task's lease)"
