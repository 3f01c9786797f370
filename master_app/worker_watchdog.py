"""A watchdog for a local grid: restart a worker that died, back off when it crash-loops.

One thread polls every worker's process (every ``poll_s``). A dead worker is started again
on its old port (:meth:`~master_app.local_grid.LocalGrid.relaunch`), at once; if it dies
again within ``stable_s`` of serving (or fails to come up), that is a crash loop and the
n-th quick death in a row waits ``base_backoff_s`` × 2^(n-2), capped at ``max_backoff_s``.
Once it answers ``/health`` again it is marked active in the registry and a
:class:`Restart` is recorded.

The thread also spawns the new processes: a worker gets SIGTERM when the thread that
started it ends (``PR_SET_PDEATHSIG``), and this thread lives as long as the grid.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from master_app.local_grid import LocalGrid
from nexus_ops.health import probe_sync

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Restart:
    """One restart: when the death was seen and when the worker served again (wall clock)."""

    index: int
    worker_id: str
    died_seen_at: float
    serving_at: float
    delay_s: float
    quick_deaths: int


@dataclass
class _State:
    """What the watchdog knows about one worker slot."""

    serving_since: float | None = None  # monotonic; None while (re)starting
    died_seen_at: float | None = None  # wall clock of the death being handled
    restart_due: float | None = None  # monotonic time of the next relaunch
    launched_at: float | None = None  # monotonic time of the last relaunch
    quick_deaths: int = 0
    delay_s: float = 0.0


class Watchdog:
    """Keeps the workers of a :class:`LocalGrid` running; a context manager."""

    def __init__(self, grid: LocalGrid, *, poll_s: float = 0.25, stable_s: float = 10.0,
                 base_backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                 start_timeout_s: float = 60.0,
                 on_restart: Callable[[Restart], None] | None = None) -> None:
        self.grid = grid
        self.poll_s = poll_s
        self.stable_s = stable_s
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.start_timeout_s = start_timeout_s
        self.on_restart = on_restart
        self.restarts: list[Restart] = []
        #: (worker index, delay before its restart) for every death seen, in order
        self.deaths: list[tuple[int, float]] = []
        self._states = [_State(serving_since=time.monotonic()) for _ in grid.workers]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def backoff_s(self, quick_deaths: int) -> float:
        """How long to wait before restarting after ``quick_deaths`` quick deaths in a row."""
        if quick_deaths <= 1:
            return 0.0  # one quick death is a crash, not yet a loop
        return float(min(self.max_backoff_s, self.base_backoff_s * 2 ** (quick_deaths - 2)))

    def serving(self, index: int) -> bool:
        """True while worker ``index`` runs and is not being restarted."""
        state = self._states[index]
        return (state.serving_since is not None and state.restart_due is None
                and state.launched_at is None and self.grid.workers[index].alive)

    def start(self) -> Watchdog:
        """Start the watching thread."""
        self._thread = threading.Thread(target=self._run, name="grid-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (the workers keep running; the grid stops them)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        with httpx.Client(timeout=0.5) as http:
            while not self._stop.is_set():
                for index in range(len(self.grid.workers)):
                    if self._stop.is_set():
                        break
                    try:
                        self._check(index, http)
                    except Exception:
                        logger.exception("watchdog: checking worker %d failed", index)
                self._stop.wait(self.poll_s)

    def _check(self, index: int, http: httpx.Client) -> None:
        worker = self.grid.workers[index]
        state = self._states[index]
        now = time.monotonic()
        if state.restart_due is None and state.launched_at is None:
            if worker.alive:
                return
            self._died(index, state, now, f"exited with {worker.proc.returncode}")
        if state.restart_due is not None:
            if now >= state.restart_due:
                state.restart_due = None
                state.launched_at = now
                self.grid.relaunch(index)
            return
        # launched: wait for /health, or give up and count a quick death
        if not worker.alive or now - (state.launched_at or now) > self.start_timeout_s:
            state.launched_at = None
            worker.stop()
            self._died(index, state, now, "did not come up", counted_quick=True)
            return
        up = probe_sync(http, worker.url, timeout_s=5.0).ok
        if up:
            self._serving(index, state)

    def _died(self, index: int, state: _State, now: float, why: str, *,
              counted_quick: bool = False) -> None:
        quick = counted_quick or (state.serving_since is not None
                                  and now - state.serving_since < self.stable_s)
        state.quick_deaths = state.quick_deaths + 1 if quick else 0
        state.delay_s = self.backoff_s(state.quick_deaths)
        state.serving_since = None
        if state.died_seen_at is None:
            state.died_seen_at = time.time()
        state.restart_due = now + state.delay_s
        self.deaths.append((index, state.delay_s))
        worker = self.grid.workers[index]
        logger.warning("watchdog: worker %s %s; restarting in %.1fs", worker.worker_id, why,
                       state.delay_s)

    def _serving(self, index: int, state: _State) -> None:
        self.grid.mark_active(index)
        restart = Restart(index=index, worker_id=self.grid.workers[index].worker_id,
                          died_seen_at=state.died_seen_at or time.time(),
                          serving_at=time.time(), delay_s=state.delay_s,
                          quick_deaths=state.quick_deaths)
        state.serving_since = time.monotonic()
        state.launched_at = None
        state.died_seen_at = None
        self.restarts.append(restart)
        logger.warning("watchdog: worker %s serves again (%.1fs after its death was seen)",
                       restart.worker_id, restart.serving_at - restart.died_seen_at)
        if self.on_restart is not None:
            try:
                self.on_restart(restart)
            except Exception:
                logger.exception("watchdog: on_restart callback failed")
