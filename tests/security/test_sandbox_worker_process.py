"""The worker process itself: non-dumpable, no secrets reachable, no sandbox outliving it,
a successor cleaning up after a crash, and a weak level refused without the opt-in.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
from typing import Any

import pytest

from tests.security.sandbox_fleet import (
    SECRET,
    SYSTEM_PYTHON,
    Target,
    nonroot_uid,
    processes_with,
    spare,
    start_worker,
    wait_ready,
)
from tests.support.waiting import wait_until

FIND_SECRET = r"""
import os
found, refused = [], 0
for pid in [p for p in os.listdir("/proc") if p.isdigit()] + [str(INPUT)]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if INPUT_SECRET.encode() in f.read():
                found.append(pid)
    except OSError:
        refused += 1
RESULT = {"found": found, "refused_worker": refused > 0}
"""

SLEEPER = r"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)",
                                  INPUT])
    os._exit(0)
os.wait()
with open("partial", "w") as f:
    f.write("x")
time.sleep(60)
"""


def test_worker_is_not_dumpable_and_its_secrets_are_out_of_reach(target: Target) -> None:
    assert target.proc is not None
    # non-dumpable: the kernel makes /proc/<worker>/environ root's, whatever the user
    assert os.stat(f"/proc/{target.proc.pid}/environ").st_uid == 0
    code = FIND_SECRET.replace("INPUT_SECRET", repr(SECRET))
    out = target.run(code, target.proc.pid)["output"]["result"]
    assert out["found"] == [], out
    target.assert_still_serves()


@pytest.mark.parametrize("name", ["crash-namespaces", "crash-landlock"])
def test_sandbox_dies_with_its_worker_and_a_successor_cleans_up(
        fleet: dict[Any, Target], security_base: Any, name: str) -> None:
    worker = spare(fleet, name)
    assert worker.proc is not None
    token = "nadg-orphan-" + secrets.token_hex(6)
    thread = threading.Thread(target=lambda: _ignore(worker.run, SLEEPER, token, 50.0),
                              daemon=True)
    thread.start()
    wait_until(lambda: processes_with(token), timeout=20, what="the run's daemon to start")
    tmp = worker.home / "tmp"
    run_folders = list(tmp.glob("nadg-py-*"))
    # a keeper-like process left by an older crash, as the worker's user
    planted = _plant_leftover(worker)
    worker.proc.send_signal(signal.SIGKILL)  # the worker alone: a crash, not a shutdown
    worker.proc.wait(timeout=10)
    wait_until(lambda: not processes_with(token), timeout=5,
               what="the sandbox of the killed worker to die with it")
    if worker.level == "namespaces":  # no host folder; the PID namespace died with it
        planted.kill()
        planted.wait(timeout=10)
        return
    # a host run folder stays behind after kill -9 until a successor starts
    assert run_folders and all(folder.exists() for folder in run_folders)
    successor = start_worker(worker.user, worker.level, security_base,
                             TMPDIR=str(tmp))
    try:
        wait_ready(successor)
        assert successor.serving(), successor.error
        assert not any(folder.exists() for folder in run_folders)
        wait_until(lambda: planted.poll() is not None, timeout=5,
                   what="the planted leftover to be killed")
        assert "killed" in successor.log_text() or "removed" in successor.log_text()
        successor.assert_still_serves()
    finally:
        successor.stop()
        if planted.poll() is None:
            planted.kill()


def _ignore(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except Exception:  # noqa: BLE001 - the request dies with the worker
        return


def _plant_leftover(worker: Target) -> subprocess.Popen[bytes]:
    """A process that looks like a keeper of a dead worker (pid 1 is never a worker)."""
    assert worker.proc is not None
    config = f'{{"nadg_sandbox": 1, "parent_pid": {worker.proc.pid}}}'
    kwargs: dict[str, Any] = {}
    if worker.user == "nonroot" and os.geteuid() == 0:
        uid = nonroot_uid()
        kwargs = {"user": uid, "group": uid, "extra_groups": []}
    return subprocess.Popen([SYSTEM_PYTHON, "-c", "import time; time.sleep(60)", config],
                            start_new_session=True, **kwargs)


def test_weak_level_is_refused_without_the_opt_in(security_base: Any) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start a worker as another user")
    worker = start_worker("nonroot", "process", security_base, NADG_SANDBOX_ALLOW_WEAK="0")
    try:
        assert worker.proc is not None
        worker.proc.wait(timeout=60)
        assert worker.proc.returncode != 0
        assert "NADG_SANDBOX_ALLOW_WEAK=1" in worker.log_text()
    finally:
        worker.stop()
