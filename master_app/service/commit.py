"""Group commit: the job runner's attempts and outcomes, written to the store in batches.

Every attempt and outcome of a run goes through one :class:`GroupCommit`. Items queue up
while a write is in flight and are written together by the next one: one
:meth:`~database.store.JobStore.write_batch` call (one transaction, one RPC on Supabase)
per batch of at most ``max_items``, after lingering at most ``linger_s`` for more to
arrive. So at 1,000 results a second the store sees tens of transactions a second, not
thousands, while each result still waits only for its own batch.

The guarantees are the store's, item by item: the first completed result of a subtask
wins; :meth:`GroupCommit.outcome` returns only once its batch is durable (nothing is
reported done before that); a batch that fails is retried item by item, so one bad item
fails only its own caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from database.store import AttemptWrite, JobStore, OutcomeWrite

logger = logging.getLogger(__name__)

#: Items per batch (one transaction): large enough to amortise a commit, small enough that
#: one statement stays quick.
MAX_ITEMS = 512
#: Seconds the writer waits for more items before writing a batch that is not full.
LINGER_S = 0.002


@dataclass
class _Pending:
    attempts: list[tuple[AttemptWrite, asyncio.Future[int]]] = field(default_factory=list)
    outcomes: list[tuple[OutcomeWrite, asyncio.Future[bool]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.attempts) + len(self.outcomes)


class GroupCommit:
    """Batches :class:`AttemptWrite` and :class:`OutcomeWrite` items into store writes."""

    def __init__(self, store: JobStore, *, max_items: int = MAX_ITEMS,
                 linger_s: float = LINGER_S) -> None:
        self.store = store
        self.max_items = max(1, max_items)
        self.linger_s = max(0.0, linger_s)
        self.batches = 0
        self.items = 0
        self._pending = _Pending()
        self._full = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    def attempt(self, subtask_id: str, worker_id: int | None,
                on_written: Callable[[int], None] | None = None) -> asyncio.Future[int]:
        """Queue an attempt; the future holds the attempt count once written.

        An attempt need not be durable before the subtask is sent (a lost one only means a
        resumed task re-sends a subtask it would re-send anyway), so callers may leave the
        future unawaited; ``on_written`` is called with the count when it is written.
        """
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if on_written is not None:
            fut.add_done_callback(lambda f: on_written(f.result())
                                  if not f.cancelled() and f.exception() is None else None)
        self._pending.attempts.append((AttemptWrite(subtask_id, worker_id), fut))
        self._kick()
        return fut

    async def outcome(self, item: OutcomeWrite) -> bool:
        """Queue an outcome and wait until its batch is durable; True when recorded (False:
        the store already held a completed result for that subtask)."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.outcomes.append((item, fut))
        self._kick()
        return await fut

    async def flush(self) -> None:
        """Wait until everything queued so far is written (or has failed)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def aclose(self) -> None:
        """Flush, then refuse nothing (a later item starts a new writer)."""
        await self.flush()

    def _kick(self) -> None:
        if len(self._pending) >= self.max_items:
            self._full.set()
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_all())

    async def _write_all(self) -> None:
        try:
            while len(self._pending):
                if self.linger_s and len(self._pending) < self.max_items:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.linger_s):
                            await self._full.wait()
                batch, rest = _split(self._pending, self.max_items)
                self._pending = rest
                if len(rest) < self.max_items:
                    self._full.clear()
                await self._write(batch)
        finally:
            self._writer = None

    async def _write(self, batch: _Pending) -> None:
        try:
            await self._write_batch(batch)
        except BaseException as exc:  # every waiter must hear of it; then re-raise
            reason = exc if isinstance(exc, Exception) else RuntimeError(
                f"the store writer stopped ({type(exc).__name__})")
            futures: list[asyncio.Future[Any]] = [f for _, f in batch.attempts]
            futures += [f for _, f in batch.outcomes]
            for fut in futures:
                _fail(fut, reason)
            raise

    async def _write_batch(self, batch: _Pending) -> None:
        attempts = [a for a, _ in batch.attempts]
        outcomes = [o for o, _ in batch.outcomes]
        try:
            done = await asyncio.to_thread(self.store.write_batch, attempts, outcomes)
        except Exception as exc:
            logger.warning("a batch of %d writes failed (%s); writing them one by one",
                           len(batch), exc)
            settled = await asyncio.to_thread(self._one_by_one, attempts, outcomes)
            futures = [f for _, f in batch.attempts] + [f for _, f in batch.outcomes]
            for fut, (value, error) in zip(futures, settled, strict=True):
                if error is not None:
                    _fail(fut, error)
                else:
                    _settle(fut, value)
            return
        self.batches += 1
        self.items += len(batch)
        for (_, afut), count in zip(batch.attempts, done.attempts, strict=True):
            _settle(afut, count)
        for (_, ofut), recorded in zip(batch.outcomes, done.recorded, strict=True):
            _settle(ofut, recorded)

    def _one_by_one(self, attempts: list[AttemptWrite], outcomes: list[OutcomeWrite]
                    ) -> list[tuple[object, Exception | None]]:
        """Each item in its own write (after a failed batch): (value, error) per item."""
        settled: list[tuple[object, Exception | None]] = []
        for a in attempts:
            try:
                settled.append((self.store.write_batch([a], []).attempts[0], None))
            except Exception as exc:
                settled.append((None, exc))
        for o in outcomes:
            try:
                settled.append((self.store.write_batch([], [o]).recorded[0], None))
            except Exception as exc:
                settled.append((None, exc))
        return settled


def _split(pending: _Pending, n: int) -> tuple[_Pending, _Pending]:
    """The first ``n`` items (attempts first, they are applied first) and the rest."""
    na = min(n, len(pending.attempts))
    no = min(n - na, len(pending.outcomes))
    return (_Pending(pending.attempts[:na], pending.outcomes[:no]),
            _Pending(pending.attempts[na:], pending.outcomes[no:]))


def _settle(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
        # an attempt future nobody awaits must not log "exception never retrieved"
        fut.add_done_callback(lambda f: f.exception())
