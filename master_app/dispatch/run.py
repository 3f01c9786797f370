"""One ``run_subtasks`` call: the loop that launches, hedges, retries and collects.

:class:`DispatchRun` owns the state of a single run (its items, lanes and report) and
composes the pieces kept in their own modules: lane bookkeeping and worker selection
(:mod:`master_app.dispatch.lanes`), the hedging policy (:mod:`master_app.dispatch.hedging`),
the retry policy (:mod:`master_app.dispatch.retry`), the pipeline depth
(:mod:`master_app.dispatch.pipeline`), progress events
(:mod:`master_app.dispatch.announce`) and worker health (:mod:`master_app.dispatch.health`).
The loop wakes whenever an attempt ends, or every :data:`TICK_S` seconds to look at
backoffs, stragglers, the deadline and cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import Sequence

from database.store import Registry
from master_app.dispatch.announce import Announcer
from master_app.dispatch.client import WorkerBusy, WorkerCallError, WorkerClient, WorkerRefused
from master_app.dispatch.events import EventCallback, EventKind
from master_app.dispatch.health import AllDownWatch, ComebackChecks, WorkerHealth
from master_app.dispatch.hedging import HedgePolicy
from master_app.dispatch.lanes import (
    Copy,
    Item,
    Lane,
    idx_of,
    pick_lane,
    ready_items,
    select_batch,
)
from master_app.dispatch.pipeline import PipelinePolicy
from master_app.dispatch.report import DispatchReport, Failure, OutcomeSink
from master_app.dispatch.retry import RetryPolicy
from master_app.metrics import TimedSink
from master_app.settings import MasterSettings
from nexus_common.protocol import ResultStatus, Subtask, SubtaskResult

# The dispatcher's modules log under one name, as when they were one module.
logger = logging.getLogger("master_app.dispatch.dispatcher")

#: How often (seconds) the loop wakes when no attempt has ended.
TICK_S = 0.05
#: Ready items looked at beyond what the free slots can take (for items that must wait
#: for a worker they have not failed on).
READY_SPARE = 64


class DispatchRun:
    """The state of one ``run_subtasks`` call; :meth:`execute` runs it to the end."""

    def __init__(self, settings: MasterSettings, client: WorkerClient,
                 subtasks: Sequence[Subtask], lanes: Sequence[Lane], *,
                 registry: Registry | None, on_event: EventCallback | None,
                 sink: OutcomeSink | None, cancel: asyncio.Event | None,
                 deadline_s: float | None) -> None:
        self.s = settings
        self.client = client
        self.items = [Item(st, idx_of(st, i)) for i, st in enumerate(subtasks)]
        self.lanes = list(lanes)
        self.announce = Announcer(on_event, len(self.items))
        self.sink = TimedSink(sink) if sink is not None else None  # store write metrics
        self.cancel = cancel or asyncio.Event()
        self.deadline = time.monotonic() + deadline_s if deadline_s else None
        self.deadline_s = deadline_s
        self.report = DispatchReport()
        self.durations: list[float] = []
        self.wake = asyncio.Event()
        self.background: set[asyncio.Task[None]] = set()
        self.comebacks = ComebackChecks(client, self.wake)
        self.remaining = len(self.items)
        self.first_open = 0
        self.hedging = HedgePolicy(settings)
        self.retry = RetryPolicy(settings)
        self.pipeline = PipelinePolicy(settings)
        self.health = WorkerHealth(registry)
        self.all_down = AllDownWatch(settings.all_down_grace_s)

    # -- main loop -------------------------------------------------------------------

    async def execute(self) -> DispatchReport:
        """Run until every subtask has a result or a final failure; return the report."""
        start = time.monotonic()
        try:
            if self.items and not self.lanes:
                await self._fail_all("no live workers: register or start a worker first")
            while self.remaining > 0:
                if self.cancel.is_set():
                    self.report.cancelled = True
                    await self._fail_all("cancelled", cancelled=True)
                    break
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    self.report.deadline_passed = True
                    await self._fail_all(f"the task deadline of {self.deadline_s:g}s passed")
                    break
                self.comebacks.check(self.lanes)
                self._launch_ready()
                if self.hedging.enabled:
                    self._hedge_stragglers()
                if await self._check_all_down():
                    break
                self.wake.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation
                # that arrives as the event is set, and a cancelled master must stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TICK_S):
                        await self.wake.wait()
        finally:
            self.comebacks.cancel()
            await self._cancel_copies()
            # Attempts still recording their outcome (the sink) finish before we return.
            while self.background:
                await asyncio.gather(*list(self.background), return_exceptions=True)
            await self.health.flush()  # the registry's counters of this run, written
            self.report.duration_s = time.monotonic() - start
        return self.report

    def _emit(self, kind: EventKind, item: Item, lane: Lane | None = None, message: str = "",
              duration_ms: float | None = None) -> None:
        self.announce.send(kind, item, lane, message=message, duration_ms=duration_ms,
                           in_flight=sum(lane.in_flight for lane in self.lanes))

    # -- launching -------------------------------------------------------------------

    def _first_open(self) -> int:
        """The index of the first item not done (every item before it is done)."""
        items, i = self.items, self.first_open
        while i < len(items) and items[i].done:
            i += 1
        self.first_open = i
        return i

    def _launch_ready(self) -> None:
        now = time.monotonic()
        self.pipeline.apply(self.lanes)
        free_slots = sum(lane.free(now) for lane in self.lanes)
        if free_slots <= 0:
            return
        # enough candidates to fill every free slot with full batches, and some spare for
        # items that wait for another worker: never a scan of the whole task
        ready = ready_items(self.items, now, start=self._first_open(),
                            limit=free_slots * self.s.batch_max + READY_SPARE)
        if not ready:
            return
        for item in ready:
            if free_slots <= 0:
                break  # every slot taken: the rest waits for the next wake-up
            if item.copies or item.done:
                continue  # taken by a batch
            lane = pick_lane(self.lanes, item, now)
            if lane is None:
                continue
            batch = select_batch(item, lane, ready, free_slots=free_slots,
                                 batch_max=self.s.batch_max, now=now)
            self._start(batch, lane, hedge=False)
            free_slots -= len(batch)

    def _start(self, batch: list[Item], lane: Lane, *, hedge: bool) -> None:
        now = time.monotonic()
        lane.in_flight += len(batch)
        lane.breaker.on_send()
        copies = []
        for item in batch:
            if not hedge:
                item.attempts += 1
            copy = Copy(lane=lane, started=now, hedge=hedge)
            item.copies.append(copy)
            copies.append(copy)
        self.report.attempts += len(batch)
        task = asyncio.create_task(self._attempt(batch, lane, copies))
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        for copy in copies:
            copy.task = task
        for item in batch:
            self._emit(EventKind.HEDGED if hedge else EventKind.DISPATCHED, item, lane,
                       "second copy of a straggler" if hedge else "")

    def _hedge_stragglers(self) -> None:
        threshold = self.hedging.threshold(self.durations)
        if threshold is None:
            return
        now = time.monotonic()
        if ready_items(self.items, now, start=self._first_open(), limit=1):
            return  # real work waiting: no spare capacity for copies
        for item in self.items:
            if not self.hedging.is_straggler(item, now, threshold):
                continue
            lane = self.hedging.lane_for(item, self.lanes, now)
            if lane is None:
                return
            self.report.hedges += 1
            logger.info("hedging %s (running %.1fs, median %.2fs) on worker %s",
                        item.subtask.id, now - item.copies[0].started,
                        statistics.median(self.durations), lane.worker.id)
            self._start([item], lane, hedge=True)

    # -- one attempt -----------------------------------------------------------------

    async def _attempt(self, batch: list[Item], lane: Lane, copies: list[Copy]) -> None:
        url = lane.worker.vm_url
        started = time.monotonic()
        try:
            if self.sink is not None:
                for item in batch:
                    try:
                        await self.sink.attempt(item.subtask, lane.worker)
                    except Exception:
                        # Bookkeeping only: a store hiccup is not the worker's failure, so
                        # it must not count on its breaker nor cost the subtask an attempt.
                        logger.exception("could not record the attempt of %s on worker %s",
                                         item.subtask.id, lane.worker.id)
            if len(batch) == 1:
                results = [await self.client.execute(url, batch[0].subtask)]
            else:
                results = await self.client.execute_batch(url, [it.subtask for it in batch])
        except asyncio.CancelledError:
            for item, copy in zip(batch, copies, strict=True):
                self._drop_copy(item, copy)
            lane.breaker.probe_in_flight = False
            self._release(lane, len(batch))
            raise
        except WorkerBusy as exc:
            now = time.monotonic()
            lane.busy_until = now + self.retry.busy_pause_s(exc.retry_after_s)
            if not self.pipeline.overfilled(lane, len(batch)) and lane.busy_since is None:
                lane.busy_since = now
            lane.breaker.probe_in_flight = False
            for item, copy in zip(batch, copies, strict=True):
                self._drop_copy(item, copy)
                item.last_error = str(exc)
                if not copy.hedge:
                    item.attempts = max(0, item.attempts - 1)
                item.failed_on.add(lane.worker.id)  # prefer another worker next time
            self._release(lane, len(batch))
            return
        except Exception as exc:
            self._detach(copies)
            if not isinstance(exc, WorkerCallError):
                logger.exception("unexpected error sending to worker %s", lane.worker.id)
            await self.health.failed(lane, exc)
            self._release(lane, len(batch))
            # A refused connection reached no worker: the subtask did not run, so it does
            # not lose an attempt (the breaker and the all-down watch bound the retries).
            refund = isinstance(exc, WorkerRefused)
            # Drop each copy just before its item is requeued or failed: an item with no
            # copy that is neither done nor backing off would be sent again by the launcher,
            # which runs at every await.
            for item, copy in zip(batch, copies, strict=True):
                self._drop_copy(item, copy)
                if refund and not copy.hedge:
                    item.attempts = max(0, item.attempts - 1)
                await self._retry_or_fail(item, lane, str(exc) or type(exc).__name__,
                                          count_on_worker=True)
            return
        self._detach(copies)
        lane.busy_since = None
        elapsed_ms = (time.monotonic() - started) * 1000
        self.report.round_trips_ms.append(elapsed_ms)
        self._release(lane, len(batch))
        for item, copy, result in zip(batch, copies, results, strict=True):
            self._drop_copy(item, copy)  # just before handling, for the reason above
            try:
                await self._handle_result(item, lane, result, elapsed_ms / len(batch))
            except Exception:
                logger.exception("could not record the result of %s", item.subtask.id)
        await self.health.ok(lane, elapsed_ms, len(batch))

    @staticmethod
    def _detach(copies: list[Copy]) -> None:
        """The call has ended: from here on its outcome is handled, never cancelled.

        A cancel in the middle of handling (a sibling's hedge won, a deadline) would cut a
        recorded result short, or skip releasing the lane and requeueing the rest of the
        batch. The copies stay on their items (so the launcher does not send them again)
        until each is handled; nobody holds a task to cancel any more.
        """
        for copy in copies:
            copy.task = None

    def _release(self, lane: Lane, n: int) -> None:
        lane.in_flight -= n
        self.wake.set()

    def _drop_copy(self, item: Item, copy: Copy) -> None:
        if copy in item.copies:
            item.copies.remove(copy)

    async def _handle_result(self, item: Item, lane: Lane, result: SubtaskResult,
                             elapsed_ms: float) -> None:
        if item.done:
            return  # another copy won
        if result.status is ResultStatus.COMPLETED:
            item.done = True
            self.remaining -= 1
            seconds = elapsed_ms / 1000
            self.durations.append(seconds)
            self.pipeline.observe(seconds)
            self.report.results[item.subtask.id] = result
            self.report.winners[item.subtask.id] = lane.worker.id
            for other in list(item.copies):
                if other.task is not None and other.task is not asyncio.current_task():
                    self._cancel_copy(item, other)
            if self.sink is not None:
                try:
                    await self.sink.completed(item.subtask, result, lane.worker)
                except Exception:
                    # The report holds it and the job runner writes what the store missed
                    # before the task ends: done all the same, so announced as done.
                    logger.exception("could not record the result of %s", item.subtask.id)
            self._emit(EventKind.COMPLETED, item, lane, duration_ms=elapsed_ms)
            return
        reason = f"{result.status.value}: {result.error or 'no error message'}"
        if result.status is ResultStatus.FAILED:
            # The subtask's own failure (its code raised, bad input): another worker would
            # fail it the same way, unless a copy elsewhere is still running.
            if not item.copies:
                await self._final_failure(item, lane, reason)
            return
        # timeout / rejected: the worker could not run it; another may.
        await self._retry_or_fail(item, lane, reason, count_on_worker=True)

    def _cancel_copy(self, item: Item, copy: Copy) -> None:
        self._drop_copy(item, copy)
        if copy.task is None:
            return
        batch_siblings = [it for it in self.items if any(c.task is copy.task for c in it.copies)]
        if not batch_siblings:
            copy.task.cancel()

    async def _retry_or_fail(self, item: Item, lane: Lane, reason: str, *,
                             count_on_worker: bool) -> None:
        if item.done:
            return
        item.last_error = reason
        item.last_worker = lane.worker.id
        if count_on_worker:
            item.failed_on.add(lane.worker.id)
        if item.copies:
            return  # a hedged copy is still running
        if self.retry.exhausted(item.attempts):
            await self._final_failure(item, lane, f"{reason} (after {item.attempts} attempts)")
            return
        item.not_before = time.monotonic() + self.retry.backoff_s(item.attempts)
        self.report.retries += 1
        self._emit(EventKind.RETRIED, item, lane, reason)

    async def _final_failure(self, item: Item, lane: Lane | None, reason: str,
                             cancelled: bool = False) -> None:
        if item.done:
            return
        item.done = True
        self.remaining -= 1
        failure = Failure(item.subtask.id, item.idx, reason, item.attempts,
                          lane.worker.id if lane else item.last_worker, cancelled)
        self.report.failures[item.subtask.id] = failure
        if self.sink is not None:
            try:
                await self.sink.failed(item.subtask, failure)
            except Exception:
                # The report has it (the job runner records what the store missed). Raising
                # here would abandon the rest of a failed batch: in flight for ever.
                logger.exception("could not record the failure of %s", item.subtask.id)
        self._emit(EventKind.CANCELLED if cancelled else EventKind.FAILED, item, lane, reason)

    # -- ending ----------------------------------------------------------------------

    async def _check_all_down(self) -> bool:
        if not self.all_down.expired(self.lanes, time.monotonic()):
            return False
        errors = sorted({it.last_error for it in self.items if it.last_error and not it.done})
        await self._fail_all(
            f"no worker could run it: all {len(self.lanes)} worker(s) failed and stayed down "
            f"for {self.s.all_down_grace_s:g}s (last error: {errors[0] if errors else 'none'})")
        return True

    async def _fail_all(self, reason: str, cancelled: bool = False) -> None:
        await self._cancel_copies()
        for item in self.items:
            if not item.done:
                await self._final_failure(item, None, reason, cancelled=cancelled)

    async def _cancel_copies(self) -> None:
        tasks = {c.task for it in self.items for c in it.copies if c.task is not None}
        current = asyncio.current_task()
        if current is not None:
            tasks.discard(current)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
