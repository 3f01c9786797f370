"""A real job under random kills: ``python -m scripts.chaos --workers N --kills K --duration S``.

What it does:

1. starts N workers on loopback (a :class:`~master_app.local_grid.LocalGrid` on a
   throwaway SQLite registry) under the :class:`~master_app.worker_watchdog.Watchdog`;
2. runs a no-op job sized to last about S seconds (``noop T sleep MS``) through a master
   subprocess (:mod:`scripts.chaos_master`, the real service layer) without chaos: the
   baseline;
3. runs the same job again and, at random moments of its first S seconds (or of the
   baseline's length, if shorter), SIGKILLs K serving workers, and with ``--master-kills M``
   the master M times, each time followed at once by a master that resumes;
4. reports:

   - ``completed`` / ``total``: subtasks of the chaos task with a completed result;
   - ``recorded_twice``: subtasks the store accepted a completed result for more than once
     (must be 0: the first completed result wins);
   - ``executed_twice``: subtasks whose completed result reached a master more than once
     (a hedge, a retry after a lost answer, a resumed master redoing work: at-least-once
     execution made visible);
   - ``detect_p50_s`` / ``detect_p95_s``: from the kill of a worker the master had a call
     on to that call failing (kills of a worker it had nothing on, e.g. while its breaker was
     open, are counted in ``idle_kills``: there is nothing to notice until it sends again);
   - ``restart_p95_s``: from a kill to that worker answering ``/health`` again;
   - ``slowdown``: the chaos run's time over the baseline's.

``--json`` prints the report as one JSON object. :func:`run_chaos` is the same for code
(the tests, :mod:`scripts.bench_chaos`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from database.backends.sqlite import SqliteStore
from database.models import SubtaskStatus
from master_app.local_grid import REPO_ROOT, LocalGrid
from master_app.worker_watchdog import Watchdog
from nexus_common.cli import CliError, ExitCode, new_app, run_app

logger = logging.getLogger(__name__)

#: Seconds a master may take past its expected end before the run is given up.
MASTER_GRACE_S = 120.0


@dataclass
class ChaosReport:
    """What one chaos run measured (times in seconds)."""

    workers: int
    kills: int
    master_kills: int
    duration_s: float
    total: int
    completed: int
    recorded_twice: int
    executed_twice: int
    detect_p50_s: float | None
    detect_p95_s: float | None
    restart_p95_s: float | None
    slowdown: float | None
    undetected: int  #: kills of a worker with a call in flight that no call failure followed
    idle_kills: int  #: kills of a worker the master had no call on (not part of detect_*)
    lost: list[str]  #: why subtasks did not complete (up to 5 distinct reasons)
    late_results_refused: int
    kill_window_s: float
    baseline_s: float
    chaos_s: float
    cold_start_s: float  #: how long starting the grid's workers took (context for restarts)
    seed: int

    def to_json(self) -> str:
        """One JSON object."""
        return json.dumps(asdict(self))


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a chaos master's log (a line cut short by a kill is skipped)."""
    events: list[dict[str, Any]] = []
    if not path.is_file():
        return events
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


class MasterProcess:
    """One chaos master subprocess."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        # stderr to a file, never a pipe nobody reads while it runs: a master that logs a
        # lot would fill the pipe and block on its next write
        self.stderr_path = log.with_suffix(".stderr")
        with self.stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scripts.chaos_master", *args, "--log", str(log)],
                cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True)

    def running(self) -> bool:
        """True while it runs."""
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        if self.running():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def error_tail(self) -> str:
        """The end of its stderr (once it has exited)."""
        try:
            return self.stderr_path.read_bytes().decode(errors="replace")[-2000:]
        except OSError:
            return ""


class ChaosRun:
    """The state of one chaos run: the grid, the watchdog, the logs, the kills."""

    def __init__(self, workers: int, capacity: int, sleep_ms: int, seed: int,
                 folder: Path) -> None:
        self.workers = workers
        self.capacity = capacity
        self.sleep_ms = sleep_ms
        self.rng = random.Random(seed)
        self.folder = folder
        self.token = secrets.token_urlsafe(32)
        self.registry = folder / "registry.db"
        self.store = SqliteStore(self.registry)
        self.env = {**os.environ, "NADG_REGISTRY": str(self.registry),
                    "NADG_AUTH_TOKEN": self.token, "NADG_LOG_LEVEL": "ERROR"}
        for name in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_KEY"):
            self.env.pop(name, None)
        self.kills: list[tuple[int, float, str]] = []  # (worker index, wall time, url)

    def job(self, command: str, log: Path, *, kill_times: list[float],
            master_kill_times: list[float], grid: LocalGrid, dog: Watchdog,
            expected_s: float) -> tuple[str, float]:
        """Run ``command`` with the kills at the given offsets; returns (task id, seconds)."""
        master = MasterProcess(["run", command], log, self.env)
        task_id, started = self._wait_task(master, log)
        plan = sorted([(t, "worker") for t in kill_times] + [(t, "master") for t in
                                                              master_kill_times])
        deadline = started + max([expected_s] + [t for t, _ in plan]) * 3 + MASTER_GRACE_S
        while True:
            now = time.time()
            while plan and now - started >= plan[0][0]:
                _, what = plan.pop(0)
                if what == "worker":
                    self._kill_worker(grid, dog)
                else:
                    master.kill()
                    master = MasterProcess(["resume"], log, self.env)
            if not master.running():
                if self._finished(task_id):
                    break
                if master.proc.returncode != 0 and not plan:
                    raise RuntimeError(f"the chaos master exited with "
                                       f"{master.proc.returncode}: {master.error_tail()}")
                master = MasterProcess(["resume"], log, self.env)  # the resume found it early
            if now > deadline:
                master.kill()
                raise RuntimeError(f"the job did not finish in {deadline - started:.0f}s")
            time.sleep(0.05)
        done = [e["at"] for e in read_log(log) if e.get("ev") == "done" and e.get("id") == task_id]
        return task_id, (max(done) if done else time.time()) - started

    def _wait_task(self, master: MasterProcess, log: Path) -> tuple[str, float]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for event in read_log(log):
                if event.get("ev") == "task":
                    return str(event["id"]), float(event["at"])
            if not master.running():
                raise RuntimeError(f"the chaos master exited with {master.proc.returncode} "
                                   f"before submitting: {master.error_tail()}")
            time.sleep(0.05)
        master.kill()
        raise RuntimeError("the chaos master did not submit its task within 120s")

    def _finished(self, task_id: str) -> bool:
        return self.store.get_task(task_id).task.status.finished

    def wait_restarts(self, dog: Watchdog, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until every killed worker served again."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(any(r.index == index and r.serving_at > at for r in dog.restarts)
                   for index, at, _ in self.kills):
                return
            time.sleep(0.1)
        logger.warning("some killed workers did not serve again within %gs", timeout_s)

    def _kill_worker(self, grid: LocalGrid, dog: Watchdog) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            serving = [i for i in range(len(grid.workers)) if dog.serving(i)]
            if serving:
                index = self.rng.choice(serving)
                worker = grid.workers[index]
                os.killpg(worker.proc.pid, signal.SIGKILL)
                self.kills.append((index, time.time(), worker.url))
                return
            time.sleep(0.05)
        logger.warning("no worker was serving for 30s: a kill was skipped")


def _analyse(run: ChaosRun, task_id: str, log: Path, dog: Watchdog) -> dict[str, Any]:
    events = read_log(log)
    detail = run.store.get_task(task_id)
    ids = {s.id for s in detail.subtasks}
    firsts: dict[str, int] = {}
    execs: dict[str, int] = {}
    refused = 0
    fails: list[tuple[float, str]] = []
    calls: dict[tuple[int, str], tuple[str, float, float]] = {}  # -> (url, sent, ended)
    for e in events:
        if e.get("ev") in ("call", "end", "fail"):
            key = (int(e["call"]), str(e.get("pid", "")))
            url, sent, ended = calls.get(key, (str(e["url"]), math.inf, math.inf))
            if e["ev"] == "call":
                sent = float(e["at"])
            else:
                ended = float(e["at"])
            calls[key] = (url, sent, ended)
        if e.get("ev") == "record" and e.get("id") in ids:
            if e.get("first"):
                firsts[e["id"]] = firsts.get(e["id"], 0) + 1
            else:
                refused += 1
        elif e.get("ev") == "exec" and e.get("id") in ids:
            execs[e["id"]] = execs.get(e["id"], 0) + 1
        elif e.get("ev") == "fail":
            fails.append((float(e["at"]), str(e["url"])))
    detects, restarts = [], []
    undetected = idle = 0
    for n, (index, at, url) in enumerate(run.kills):
        busy = any(c_url == url and sent <= at < ended for c_url, sent, ended in calls.values())
        if not busy:
            idle += 1  # the master had no call on it: nothing to notice until it sends one
            continue
        later = [k_at for k_index, k_at, _ in run.kills[n + 1:] if k_index == index]
        until = min(later, default=math.inf)
        seen = [f_at for f_at, f_url in fails if f_url == url and at <= f_at < until]
        if seen:
            detects.append(min(seen) - at)
        else:
            undetected += 1
        back = [r.serving_at for r in dog.restarts if r.index == index and r.serving_at > at]
        if back:
            restarts.append(min(back) - at)
    return {
        "total": len(detail.subtasks),
        "completed": sum(1 for s in detail.subtasks if s.status is SubtaskStatus.COMPLETED),
        "recorded_twice": sum(1 for c in firsts.values() if c > 1),
        "executed_twice": sum(1 for c in execs.values() if c > 1),
        "late_results_refused": refused,
        "detect_p50_s": percentile(detects, 50), "detect_p95_s": percentile(detects, 95),
        "restart_p95_s": percentile(restarts, 95), "undetected": undetected,
        "idle_kills": idle,
        "lost": sorted({s.error or s.status.value for s in detail.subtasks
                        if s.status is not SubtaskStatus.COMPLETED})[:5],
    }


def run_chaos(workers: int = 4, kills: int = 20, duration_s: float = 60.0,
              master_kills: int = 0, *, capacity: int = 2, sleep_ms: int = 500,
              seed: int | None = None) -> ChaosReport:
    """One chaos run (see the module docstring); raises RuntimeError if it cannot run."""
    if workers < 1 or kills < 0 or master_kills < 0 or duration_s <= 0:
        raise ValueError("need --workers >= 1, --kills >= 0, --master-kills >= 0 and "
                         "--duration > 0")
    seed = seed if seed is not None else secrets.randbelow(2**31)
    slots = workers * capacity
    subtasks = max(2 * slots, int(slots * duration_s * 1000 / sleep_ms))
    command = f"noop {subtasks} sleep {sleep_ms}"
    with tempfile.TemporaryDirectory(prefix="nadg-chaos-") as tmp:
        run = ChaosRun(workers, capacity, sleep_ms, seed, Path(tmp))
        try:
            started = time.monotonic()
            with LocalGrid(workers, run.store, run.token, capacity=capacity,
                           name_prefix="chaos") as grid, Watchdog(grid) as dog:
                cold_start_s = time.monotonic() - started
                _, baseline_s = run.job(command, run.folder / "baseline.jsonl", kill_times=[],
                                        master_kill_times=[], grid=grid, dog=dog,
                                        expected_s=duration_s)
                window = min(duration_s, baseline_s)
                kill_times = [run.rng.uniform(0.05, 0.95) * window for _ in range(kills)]
                master_times = [run.rng.uniform(0.2, 0.8) * window for _ in range(master_kills)]
                log = run.folder / "chaos.jsonl"
                task_id, chaos_s = run.job(command, log, kill_times=kill_times,
                                           master_kill_times=master_times, grid=grid, dog=dog,
                                           expected_s=duration_s)
                run.wait_restarts(dog, timeout_s=120)
                found = _analyse(run, task_id, log, dog)
        finally:
            run.store.close()
    return ChaosReport(workers=workers, kills=len(run.kills), master_kills=master_kills,
                       duration_s=duration_s, kill_window_s=round(window, 3),
                       baseline_s=round(baseline_s, 3), chaos_s=round(chaos_s, 3),
                       slowdown=round(chaos_s / baseline_s, 3) if baseline_s > 0 else None,
                       seed=seed, cold_start_s=round(cold_start_s, 3), **found)


app = new_app("Run a real job on a local grid while killing workers (and the master).")
app.info.no_args_is_help = False


@app.command()
def chaos(
    workers: Annotated[int, typer.Option(min=1, help="workers in the grid")] = 4,
    kills: Annotated[int, typer.Option(min=0, help="worker kills (SIGKILL)")] = 20,
    duration: Annotated[float, typer.Option(min=1, help="seconds the kills spread over")] = 60,
    master_kills: Annotated[int, typer.Option(
        min=0, help="master kills, each followed by a resume")] = 0,
    capacity: Annotated[int, typer.Option(min=1, help="subtasks at once per worker")] = 2,
    sleep_ms: Annotated[int, typer.Option(min=1, help="each no-op subtask's sleep")] = 500,
    seed: Annotated[int | None, typer.Option(help="for a repeatable run")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> int:
    """Run the job without, then with chaos, and report what survived."""
    try:
        report = run_chaos(workers, kills, duration, master_kills, capacity=capacity,
                           sleep_ms=sleep_ms, seed=seed)
    except (RuntimeError, OSError) as exc:
        raise CliError(str(exc)) from None
    if as_json:
        typer.echo(report.to_json())
    else:
        width = max(len(k) for k in asdict(report))
        for key, value in asdict(report).items():
            typer.echo(f"{key:<{width}}  {value}")
    ok = report.completed == report.total and report.recorded_twice == 0
    return ExitCode.OK if ok else ExitCode.FAILED


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (1 when a subtask was lost or stored twice)."""
    logging.basicConfig(level=os.environ.get("NADG_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_app(app, argv, prog_name="python -m scripts.chaos")


if __name__ == "__main__":
    raise SystemExit(main())
