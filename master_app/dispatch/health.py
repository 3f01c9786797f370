"""Worker health during a run: breaker feedback, the registry mirror, the all-down watch.

Every answered call closes the worker's breaker and every failed one counts towards opening
it (an auth error counts twice); both are mirrored to the registry when there is one
(dispatch counts, latency and circuit state), off the event loop. :class:`AllDownWatch`
says when no worker has been up (closed breaker, not answering only 503) for
``all_down_grace_s``; :class:`ComebackChecks` notices a worker whose breaker is open
answering again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from database.models import CircuitState
from database.store import Registry
from master_app.dispatch.client import WorkerAuthError, WorkerCallError, WorkerClient
from master_app.dispatch.lanes import Lane
from master_app.metrics import observe_breaker

# The dispatcher's modules log under one name, as when they were one module.
logger = logging.getLogger("master_app.dispatch.dispatcher")

#: While a worker's breaker is open, its ``/health`` is asked this often (seconds), so a
#: worker that comes back (restarted by a watchdog, a network blip over) gets work again
#: within about a second instead of after the whole breaker cooldown.
HEALTH_CHECK_EVERY_S = 1.0
HEALTH_CHECK_TIMEOUT_S = 2.0


#: Seconds the registry's dispatch counters may lag: they are added up per worker and
#: written at most this often (and at the end of a run), not once per call.
COUNTER_FLUSH_S = 0.5


class WorkerHealth:
    """Feeds call outcomes to a lane's breaker and mirrors them to the registry.

    Circuit state changes are written at once; dispatch counters (``total_tasks``,
    latency) are summed per worker and written every :data:`COUNTER_FLUSH_S` seconds in
    one statement per worker (:meth:`flush` writes what is left).
    """

    def __init__(self, registry: Registry | None) -> None:
        self.registry = registry
        #: worker id -> [ok, failed, latest latency]
        self._counts: dict[int, list[float | None]] = {}
        self._last_flush = time.monotonic()
        self._flush_lock = asyncio.Lock()

    async def ok(self, lane: Lane, latency_ms: float, count: int) -> None:
        """The worker answered a request carrying ``count`` subtasks."""
        before = lane.breaker.state
        after = lane.breaker.on_success()
        await self._mirror(lane, before, after, ok=True, latency_ms=latency_ms, count=count)

    async def failed(self, lane: Lane, exc: Exception) -> None:
        """The worker failed a call with ``exc``."""
        before = lane.breaker.state
        after = lane.breaker.on_failure()
        if isinstance(exc, WorkerAuthError):
            after = lane.breaker.on_failure() if after is not CircuitState.OPEN else after
        logger.warning("worker %s failed a call (%s); circuit %s", lane.worker.id, exc, after)
        await self._mirror(lane, before, after, ok=False, latency_ms=None)

    async def _mirror(self, lane: Lane, before: CircuitState, after: CircuitState, *,
                      ok: bool, latency_ms: float | None, count: int = 1) -> None:
        if before is not after:
            observe_breaker(lane.worker.id, before, after)
        registry = self.registry
        if registry is None:
            return
        held = self._counts.setdefault(lane.worker.id, [0, 0, None])
        held[0 if ok else 1] = (held[0 if ok else 1] or 0) + count
        if latency_ms is not None:
            held[2] = latency_ms
        try:
            if before is not after:
                await asyncio.to_thread(registry.set_circuit_state, lane.worker.id, after)
        except Exception:
            logger.exception("could not mirror worker %s to the registry", lane.worker.id)
        if (time.monotonic() - self._last_flush >= COUNTER_FLUSH_S
                and not self._flush_lock.locked()):
            await self.flush()

    async def flush(self) -> None:
        """Write the summed dispatch counters (one statement per worker)."""
        registry = self.registry
        if registry is None:
            return
        async with self._flush_lock:
            counts, self._counts = self._counts, {}
            self._last_flush = time.monotonic()
            if not counts:
                return

            def record() -> None:
                for wid, (ok, failed, latency) in counts.items():
                    try:
                        registry.record_dispatches(wid, ok=int(ok or 0),
                                                   failed=int(failed or 0), latency_ms=latency)
                    except Exception:
                        logger.exception("could not mirror worker %s's counters to the"
                                         " registry", wid)

            await asyncio.to_thread(record)


class AllDownWatch:
    """Tracks how long every worker of a run has been down (no breaker closed)."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.since: float | None = None

    def expired(self, lanes: Sequence[Lane], now: float) -> bool:
        """True once no lane has been up (see :meth:`up`) for ``grace_s`` seconds."""
        if not lanes or any(self.up(lane, now) for lane in lanes):
            self.since = None
            return False
        if self.since is None:
            self.since = now
            return False
        return now - self.since >= self.grace_s

    def up(self, lane: Lane, now: float) -> bool:
        """A closed breaker, and not answering only busy (503) for ``grace_s`` or more.

        Half-open probes do not count as up until one succeeds. A worker that answers
        nothing but 503 (a proxy in front of a stopped worker, one stuck starting) never
        trips its breaker, since busy is not a failure; without this a run on such workers
        would wait for ever.
        """
        if lane.breaker.state is not CircuitState.CLOSED:
            return False
        return lane.busy_since is None or now - lane.busy_since < self.grace_s


class ComebackChecks:
    """Asks ``/health`` of each worker whose breaker is open, about once a second; a worker
    that answers gets its half-open probe at once (and the run's loop is woken)."""

    def __init__(self, client: WorkerClient, wake: asyncio.Event) -> None:
        self.client = client
        self.wake = wake
        self.running: set[asyncio.Task[None]] = set()

    def check(self, lanes: Sequence[Lane]) -> None:
        """Start a check of every open lane whose next check is due."""
        now = time.monotonic()
        for lane in lanes:
            if (lane.health_check_running or now < lane.next_health_check
                    or lane.breaker.state is not CircuitState.OPEN):
                continue
            lane.health_check_running = True
            lane.next_health_check = now + HEALTH_CHECK_EVERY_S
            task = asyncio.create_task(self._check(lane))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    def cancel(self) -> None:
        """Stop the checks in flight (the run is over)."""
        for task in list(self.running):
            task.cancel()

    async def _check(self, lane: Lane) -> None:
        try:
            await self.client.health(lane.worker.vm_url, timeout_s=HEALTH_CHECK_TIMEOUT_S)
        except WorkerCallError:
            return  # still down: the breaker stays open
        except Exception:  # a check is advice: it never ends the run (the cooldown still holds)
            logger.debug("health check of worker %s failed", lane.worker.id, exc_info=True)
            return
        finally:
            lane.health_check_running = False
        if lane.breaker.state is CircuitState.OPEN:
            logger.info("worker %s answers /health again; probing it now", lane.worker.id)
            lane.breaker.probe_now()
            self.wake.set()
