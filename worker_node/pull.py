"""The pull worker: ``python -m worker_node pull``. It only dials out.

It needs the store's address (``DATABASE_URL``, or ``SUPABASE_URL`` with
``SUPABASE_ANON_KEY``) and its credential ``NADG_WORKER_CREDENTIAL`` (from ``python -m
database.manage_workers enroll NAME``), and nothing that accepts a connection. A loop:

1. claim up to its free slots of subtasks under a lease (``lease_s``);
2. run each on the same :class:`~worker_node.runner.SubtaskRunner`, executors, sandbox and
   limits as a push worker's ``POST /execute``;
3. extend its leases every ``lease_s / 3`` while they run;
4. complete each with its result (the store keeps the first completed result);
5. with nothing to claim, wait: LISTEN/NOTIFY on Postgres, a long-poll claim on Supabase,
   and look again at least every ``idle_poll_s`` (a lease that expired needs no notice).

A worker killed mid-run leaves leases that expire; another worker claims them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass

from database.leases import CredentialRefused, Lease, PullStore
from database.store import StoreError, StoreUnavailable
from nexus_common.protocol import ResultStatus, Subtask, SubtaskResult
from worker_node.runner import SubtaskRunner
from worker_node.settings import WorkerSettings
from worker_node.state import VERSION

logger = logging.getLogger(__name__)

#: Kinds a pull worker never claims: training rounds talk to the master over HTTP.
NOT_PULLED = frozenset({"train"})


@dataclass(frozen=True)
class PullOptions:
    """How a pull worker leases work."""

    lease_s: float = 30.0  #: lease length; extended every lease_s / 3 while running
    timeout_s: float = 300.0  #: a pulled subtask's deadline (the store keeps none)
    idle_poll_s: float = 5.0  #: an idle worker looks again at least this often
    long_poll_s: float = 10.0  #: how long one long-poll claim waits (Supabase)
    backoff_s: float = 2.0  #: wait after a store error before trying again


class PullWorker:
    """Claims, runs, extends and completes subtasks through a :class:`PullStore`."""

    def __init__(self, store: PullStore, runner: SubtaskRunner,
                 options: PullOptions | None = None) -> None:
        self.store = store
        self.runner = runner
        self.options = options or PullOptions()
        self.kinds = [k for k in runner.supported_kinds() if k not in NOT_PULLED]
        self.worker_id: int | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._slot_free = asyncio.Event()
        self.completed = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set (then finish what runs); raises CredentialRefused when
        the credential is refused (revoked) so that the process exits."""
        self.worker_id = await asyncio.to_thread(
            self.store.hello, self.kinds, self.runner.capacity, VERSION)
        logger.info("pull worker %s up: kinds %s, capacity %d", self.worker_id,
                    ", ".join(self.kinds), self.runner.capacity)
        extender = asyncio.create_task(self._extend_loop(stop))
        try:
            while not stop.is_set():
                free = self.runner.capacity - len(self._running)
                if free <= 0:
                    await self._wait_slot(stop)
                    continue
                try:
                    leases = await self._claim(free)
                except CredentialRefused:
                    raise
                except StoreError as exc:
                    logger.warning("claim failed: %s; trying again in %.0f s", exc,
                                   self.options.backoff_s)
                    await _sleep_or_stop(stop, self.options.backoff_s)
                    continue
                if leases:
                    for lease in leases:
                        self._running[lease.subtask_id] = asyncio.create_task(
                            self._execute(lease))
                    continue
                if not self.store.long_polls:  # the long-poll claim has waited already
                    await self._idle_wait(stop)
        finally:
            extender.cancel()
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _claim(self, free: int) -> list[Lease]:
        wait = self.options.long_poll_s if self.store.long_polls else 0.0
        return await asyncio.to_thread(self.store.claim, free, self.options.lease_s,
                                       self.kinds, wait)

    async def _idle_wait(self, stop: asyncio.Event) -> None:
        """LISTEN until a notification, ``idle_poll_s`` or ``stop`` (checked each 0.5 s);
        subtasks running meanwhile go on."""
        deadline = time.monotonic() + self.options.idle_poll_s
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if await asyncio.to_thread(self.store.wait_for_work, min(left, 0.5)):
                return

    async def _wait_slot(self, stop: asyncio.Event, timeout_s: float | None = None) -> None:
        self._slot_free.clear()
        waiters = [asyncio.create_task(self._slot_free.wait()),
                   asyncio.create_task(stop.wait())]
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def _execute(self, lease: Lease) -> None:
        try:
            result = await self._run_one(lease)
            status = "completed" if result.status is ResultStatus.COMPLETED else "failed"
            first = await asyncio.to_thread(
                self.store.complete, lease.subtask_id, status,
                result.model_dump(mode="json") if status == "completed" else None,
                result.error or (None if status == "completed" else result.status.value))
            if first and status == "completed":
                self.completed += 1
            elif not first:
                logger.info("subtask %s: the store kept another outcome (lease lost or "
                            "completed elsewhere)", lease.subtask_id)
        except StoreError as exc:
            logger.warning("subtask %s: could not record its outcome (%s); its lease will "
                           "expire and it runs again", lease.subtask_id, exc)
        finally:
            self._running.pop(lease.subtask_id, None)
            self._slot_free.set()

    async def _run_one(self, lease: Lease) -> SubtaskResult:
        try:
            subtask = Subtask.model_validate({
                "id": lease.subtask_id, "task_id": lease.task_id, "kind": lease.kind,
                "payload": lease.payload, "timeout_s": self.options.timeout_s})
        except ValueError as exc:
            return SubtaskResult(id=lease.subtask_id, status=ResultStatus.REJECTED,
                                 error=f"bad subtask: {exc}")
        return await self.runner.execute(subtask)  # never busy: we claim free slots only

    async def _extend_loop(self, stop: asyncio.Event) -> None:
        every = max(0.5, self.options.lease_s / 3)
        while not stop.is_set():
            await asyncio.sleep(every)
            held = list(self._running)
            if not held:
                continue
            try:
                kept = set(await asyncio.to_thread(self.store.extend, held,
                                                   self.options.lease_s))
            except (StoreError, StoreUnavailable) as exc:
                logger.warning("could not extend leases: %s", exc)
                continue
            except Exception:  # the extender must outlive any one failure, or leases
                # lapse under running subtasks and another worker runs them again
                logger.exception("could not extend leases")
                continue
            for lost in set(held) - kept:
                logger.info("subtask %s: lease lost (it finished elsewhere or was revoked)",
                            lost)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def serve(options: PullOptions | None = None) -> int:
    """Run a pull worker from the environment until SIGINT/SIGTERM; returns an exit code
    (0 stopped, 1 refused credential, 3 store unreachable or misconfigured, or a sandbox
    or device this host cannot give)."""
    from database.leases import open_pull_store
    from worker_node.device import PlacementError
    from worker_node.hardening import HardeningRefused, drop_secrets, harden
    from worker_node.main import _configure_logging
    from worker_node.sandbox_isolation import SandboxRefused
    from worker_node.settings import InsecureStartRefused

    settings = WorkerSettings()
    _configure_logging(settings.log_level)
    try:
        store = open_pull_store()
    except StoreError as exc:
        logger.error("%s", exc)
        return 3
    drop_secrets(("NADG_WORKER_CREDENTIAL", "DATABASE_URL", "SUPABASE_ANON_KEY"))
    try:
        harden(settings, True)
        return asyncio.run(_main(store, settings, options))
    except (HardeningRefused, SandboxRefused, PlacementError, InsecureStartRefused) as exc:
        logger.error("this worker cannot start: %s", exc)
        return 3
    except CredentialRefused as exc:
        logger.error("the store refused this worker's credential: %s", exc)
        return 1
    except StoreUnavailable as exc:
        logger.error("%s", exc)
        return 3
    finally:
        store.close()


async def _main(store: PullStore, settings: WorkerSettings,
                options: PullOptions | None) -> int:
    from worker_node.device import choose_placement
    from worker_node.main import build_state
    from worker_node.runtime import configure_torch

    await asyncio.to_thread(configure_torch, settings.capacity, settings.torch_threads)
    placement = await asyncio.to_thread(choose_placement, settings.device, settings.dtype)
    state = build_state(settings, placement)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = PullWorker(store, state.runner, options)
    try:
        await worker.run(stop)
    finally:
        state.runner.shutdown()
    logger.info("pull worker stopped after %d completed subtasks", worker.completed)
    return 0
