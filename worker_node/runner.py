"""Runs subtasks on a bounded thread pool behind a bounded queue.

``capacity`` subtasks run at once (the pool's threads); up to ``queue_size`` more wait.
Past that, :class:`WorkerBusy` (503 with Retry-After) instead of an unbounded queue.
Every outcome becomes a :class:`SubtaskResult`: an executor that raises gives ``failed``,
one past its deadline ``timeout``, an unsupported kind ``rejected``. The event loop never
runs executor code, so ``/health`` answers while inference runs; the one exception is a
subtask its executor declares trivial (:class:`~worker_node.executors.base.InlineExecutor`:
a no-op without a sleep), which runs on the loop instead of paying two thread hops.

A thread cannot be killed: an inference past its deadline is answered ``timeout`` at once
but keeps its slot until it finishes (the slot count stays honest).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from nexus_common.protocol import ResultStatus, Subtask, SubtaskKind, SubtaskResult
from worker_node.executors.base import (
    ExecutionContext,
    Executor,
    InlineExecutor,
    SubtaskRejected,
    SubtaskTimedOut,
)
from worker_node.metrics import WorkerMetrics

logger = logging.getLogger(__name__)

#: How long past its deadline the runner waits for an executor that stops itself.
DEADLINE_GRACE_S = 1.0


class WorkerBusy(Exception):
    """Every slot is busy and the queue is full; retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: int, message: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SubtaskRunner:
    """Admission control, the thread pool, deadlines and result mapping."""

    def __init__(self, executors: dict[SubtaskKind, Executor], capacity: int,
                 queue_size: int, metrics: WorkerMetrics) -> None:
        self.executors = executors
        self.capacity = capacity
        self.queue_size = queue_size
        self.metrics = metrics
        self._pool = ThreadPoolExecutor(max_workers=capacity, thread_name_prefix="nadg-exec")
        self._admitted = 0  # touched on the event loop only
        self._waiting = 0  # batch items accepted, waiting for a slot (event loop only)
        self._running = 0
        self._running_lock = threading.Lock()
        self._room = asyncio.Event()
        self._cancels: set[threading.Event] = set()  # of the subtasks running or queued
        self._inline = {kind: executor for kind, executor in executors.items()
                        if isinstance(executor, InlineExecutor)}
        self.counts: Counter[str] = Counter()
        metrics.bind_gauges(lambda: float(self.running), lambda: float(self.queued))

    @property
    def running(self) -> int:
        """Subtasks executing now."""
        return self._running

    @property
    def queued(self) -> int:
        """Subtasks accepted and waiting for a thread (batch items waiting for a slot too)."""
        return max(0, self._admitted - self._running) + self._waiting

    def has_room(self) -> bool:
        """True when one more subtask may be accepted (batch items waiting count)."""
        return self._admitted + self._waiting < self.capacity + self.queue_size

    def supported_kinds(self) -> list[str]:
        """The kinds this worker runs."""
        return sorted(kind.value for kind in self.executors)

    def busy_error(self) -> WorkerBusy:
        """The 503 to answer when there is no room."""
        self.metrics.rejected_busy.inc()
        return WorkerBusy(1, f"worker is busy: {self.running} running, {self.queued} queued "
                             f"(capacity {self.capacity}, queue {self.queue_size}); "
                             "retry later or send the subtask to another worker")

    async def execute(self, subtask: Subtask, *,
                      reserved: list[bool] | None = None) -> SubtaskResult:
        """Run one subtask; raises :class:`WorkerBusy` when full.

        ``reserved``: the subtask is a batch item already counted in ``_waiting`` (see
        :meth:`execute_batch`; ``reserved[0]`` is True until the count is given back); it
        waits for a slot instead of raising.
        """
        try:
            executor = self.executors.get(subtask.kind)
            if executor is None:
                return self._finish(subtask, ResultStatus.REJECTED, None,
                                    f"this worker does not run {subtask.kind.value!r} "
                                    f"subtasks; it runs {', '.join(self.supported_kinds())}",
                                    0.0)
            if not reserved and not self.has_room():
                raise self.busy_error()
            while self._admitted >= self.capacity + self.queue_size:
                self._room.clear()
                await self._room.wait()
        finally:
            if reserved is not None:
                self._unreserve(reserved)
        loop = asyncio.get_running_loop()
        self._admitted += 1
        start = time.monotonic()
        deadline = start + subtask.timeout_s
        ctx = ExecutionContext(subtask_id=subtask.id, task_id=subtask.task_id,
                               timeout_s=subtask.timeout_s)
        inline = self._inline.get(subtask.kind)
        future: Future[dict[str, Any]] | None = None
        # trivial work runs on the loop only while a slot is free (nothing queued ahead of
        # it, the slot count stays honest); otherwise it waits its turn in the pool
        if (inline is None or self._admitted > self.capacity
                or not inline.runs_inline(subtask.payload)):
            self._cancels.add(ctx.cancel)
            try:
                future = self._pool.submit(self._call, executor, subtask.payload, ctx,
                                           deadline)
            except BaseException:  # the pool is shut down: give the slot back
                self._cancels.discard(ctx.cancel)
                self._release()
                raise
            future.add_done_callback(lambda _f: self._release_from_thread(loop))
            future.add_done_callback(lambda _f: self._cancels.discard(ctx.cancel))
        try:
            if future is None:
                output = self._call_inline(executor, subtask.payload, ctx, deadline)
            else:
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation
                # that races with completion
                async with asyncio.timeout(subtask.timeout_s + DEADLINE_GRACE_S):
                    output = await self._wrap(future)
        except asyncio.CancelledError:
            # the request was cancelled (shutdown, a cancelled batch): tell the executor to
            # stop where it can, so its slot comes back instead of running to the deadline
            ctx.cancel.set()
            raise
        except (TimeoutError, SubtaskTimedOut) as exc:
            ctx.cancel.set()
            partial = exc.output if isinstance(exc, SubtaskTimedOut) else None
            message = str(exc) if isinstance(exc, SubtaskTimedOut) else (
                f"subtask ran past its {subtask.timeout_s:g}s timeout")
            return self._finish(subtask, ResultStatus.TIMEOUT, partial, message, start)
        except SubtaskRejected as exc:
            return self._finish(subtask, ResultStatus.REJECTED, None, str(exc), start)
        except Exception as exc:  # the subtask's own failure is data, never a crash
            logger.warning("subtask %s failed: %s: %s", subtask.id, type(exc).__name__, exc,
                           exc_info=logger.isEnabledFor(logging.DEBUG))
            return self._finish(subtask, ResultStatus.FAILED, None,
                                f"{type(exc).__name__}: {exc}", start)
        return self._finish(subtask, ResultStatus.COMPLETED, output, None, start)

    async def execute_batch(self, subtasks: list[Subtask]) -> list[SubtaskResult]:
        """Run a batch concurrently (as room allows); results in the order given.

        A batch is accepted when there is room for one more subtask; its items are counted
        as queued at once (before any of them runs), so no other request is accepted past
        the bound while they wait for slots.
        """
        if subtasks and not self.has_room():
            raise self.busy_error()
        reservations = [[True] for _ in subtasks]
        self._waiting += len(subtasks)
        try:
            return list(await asyncio.gather(
                *(self.execute(subtask, reserved=reservation)
                  for subtask, reservation in zip(subtasks, reservations, strict=True))))
        finally:  # items cancelled before they started never gave their count back
            for reservation in reservations:
                self._unreserve(reservation)

    def _unreserve(self, reservation: list[bool]) -> None:
        if reservation[0]:
            reservation[0] = False
            self._waiting -= 1

    @staticmethod
    async def _wrap(future: Future[dict[str, Any]]) -> dict[str, Any]:
        return await asyncio.wrap_future(future)

    def _call_inline(self, executor: Executor, payload: Any, ctx: ExecutionContext,
                     deadline: float) -> dict[str, Any]:
        """Run a trivial subtask on the event loop (its slot is given back at once)."""
        try:
            return self._call(executor, payload, ctx, deadline)
        finally:
            self._release()

    def _call(self, executor: Executor, payload: Any, ctx: ExecutionContext,
              deadline: float) -> dict[str, Any]:
        with self._running_lock:
            self._running += 1
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or ctx.cancel.is_set():
                raise SubtaskTimedOut("subtask waited in the queue past its deadline")
            return executor.run(payload, dataclasses.replace(ctx, timeout_s=remaining))
        finally:
            with self._running_lock:
                self._running -= 1

    def _release_from_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop.is_closed():  # a timed-out subtask that finished after shutdown
            return
        try:
            loop.call_soon_threadsafe(self._release)
        except RuntimeError:  # the loop closed in between
            return

    def _release(self) -> None:
        self._admitted -= 1
        self._room.set()

    def _finish(self, subtask: Subtask, status: ResultStatus, output: dict[str, Any] | None,
                error: str | None, start: float) -> SubtaskResult:
        seconds = time.monotonic() - start if start else 0.0
        self.counts[status.value] += 1
        self.metrics.observe(subtask.kind.value, status.value, seconds)
        # a completed subtask is the common case (thousands a second): DEBUG; the rest INFO
        level = logging.DEBUG if status is ResultStatus.COMPLETED else logging.INFO
        if logger.isEnabledFor(level):
            logger.log(level, "subtask=%s task=%s kind=%s status=%s duration_ms=%.1f",
                       subtask.id, subtask.task_id, subtask.kind.value, status.value,
                       seconds * 1000,
                       extra={"subtask_id": subtask.id, "task_id": subtask.task_id})
        return SubtaskResult(id=subtask.id, status=status, output=output, error=error,
                             metrics={"duration_ms": round(seconds * 1000, 3),
                                      "kind": subtask.kind.value})

    def shutdown(self) -> None:
        """Stop taking work and tell running subtasks to stop (a sandboxed run is killed
        with everything it started; an inference thread finishes in the background)."""
        for cancel in list(self._cancels):
            cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
