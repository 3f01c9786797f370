"""A run that signals the worker: its parent, the worker's pid, ``kill(-1)``, every pid.

Contained on every level but the weak one: a PID namespace shows only the run's own
processes, a per-run uid may signal only itself, Landlock (ABI 6+) scopes signals to the
sandbox. On the weak level (a non-root worker with neither) the run kills the worker:
that is why the level needs ``NADG_SANDBOX_ALLOW_WEAK=1``; the test shows it.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from tests.security.sandbox_fleet import Target, spare
from tests.support.waiting import wait_until

KILL_EVERYTHING = r"""
import os, signal
hits = []
targets = [os.getppid(), INPUT["worker"], -1]
targets += [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
for pid in targets:
    if pid in (0, os.getpid()):
        continue
    try:
        os.kill(pid, signal.SIGKILL)
        hits.append(pid)
    except OSError:
        pass
RESULT = hits
"""


def test_run_cannot_kill_the_worker(target: Target) -> None:
    if target.level == "process":
        pytest.skip("the weak level is shown by test_weak_level_run_kills_its_worker "
                    "(its kill(-1) would also hit the fleet's other non-root workers)")
    assert target.proc is not None
    target.run(KILL_EVERYTHING, {"worker": target.proc.pid})
    target.assert_still_serves()


def test_weak_level_run_kills_its_worker(fleet: dict[Any, Target]) -> None:
    worker = spare(fleet, "weak-victim")
    try:
        assert worker.status()["sandbox"]["signals"].startswith("NOT contained")
        assert worker.proc is not None
        code = "import os, signal\nos.kill(INPUT, signal.SIGKILL)"
        try:
            worker.run(code, worker.proc.pid)
        except Exception:  # noqa: BLE001 - the connection dies with the worker
            pass
        wait_until(lambda: worker.proc is not None and worker.proc.poll() is not None,
                   timeout=10, what="the weak worker to be killed by its run")
        assert worker.proc.returncode == -signal.SIGKILL
    finally:
        worker.stop()
