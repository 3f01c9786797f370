"""The sandbox as a non-root worker runs it (uid 1000 on a Space: no privilege drop).

When the tests run as root, the sandbox is driven from a process demoted to ``nobody``
(on the system python3 with this venv's packages on PYTHONPATH), so the non-root path is
exercised too: no per-run uid there, the isolation comes from namespaces or Landlock
(tests/security/ attacks real non-root workers at every level).
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from typing import Any

import pytest

from tests.support.servers import REPO_ROOT
from worker_node.sandbox import NOBODY_UID, _world_executable

SYSTEM_PYTHON = "/usr/bin/python3"

DRIVER = """
import json, sys
from worker_node.sandbox import SandboxLimits, run_python
cases = json.loads(sys.argv[1])
out = {}
for name, (code, timeout) in cases.items():
    o = run_python(code, None, SandboxLimits(timeout_s=timeout, memory_bytes=256 * 2**20,
                                             max_procs=16))
    out[name] = {**o.as_output(), "duration_ms": o.duration_ms}
print(json.dumps(out))
"""

CASES = {
    "env": ("import os\nRESULT = [os.getuid(), sorted(os.environ)]", 10),
    "loop": ("while True:\n    pass", 1.0),
    "memory": ("x = []\nwhile True:\n    x.append(bytearray(10**7))", 10),
    "forkbomb": ("import os\nwhile True:\n    os.fork()", 2.0),
    "print": ("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 1_000_000)", 10),
    "ok": ("RESULT = 6 * 7", 10),
}


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Any]:
    if os.geteuid() != 0:
        pytest.skip("not root: the other sandbox tests already run the non-root path")
    if not _world_executable(SYSTEM_PYTHON):
        pytest.skip(f"{SYSTEM_PYTHON} is not there to run as nobody")
    site = sysconfig.get_paths()["purelib"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO_ROOT}:{site}",
           "NADG_AUTH_TOKEN": "must-not-leak", "HOME": "/tmp"}
    proc = subprocess.run([SYSTEM_PYTHON, "-c", DRIVER, json.dumps(CASES)], cwd="/tmp",
                          env=env, user=NOBODY_UID, group=NOBODY_UID, extra_groups=[],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr:
        pytest.skip(f"the venv's packages do not load on {SYSTEM_PYTHON}: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_runs_as_the_same_user_with_a_clean_environment(outcomes: dict[str, Any]) -> None:
    uid, names = outcomes["env"]["result"]
    assert uid == NOBODY_UID
    assert "NADG_AUTH_TOKEN" not in names and "PYTHONPATH" not in names


def test_loop_is_killed(outcomes: dict[str, Any]) -> None:
    assert outcomes["loop"]["timed_out"] and outcomes["loop"]["killed_by"] == "SIGKILL"
    assert outcomes["loop"]["duration_ms"] < 5_000


def test_memory_bomb_hits_the_limit(outcomes: dict[str, Any]) -> None:
    assert "MemoryError" in outcomes["memory"]["stderr"]


def test_fork_bomb_is_bounded(outcomes: dict[str, Any]) -> None:
    bomb = outcomes["forkbomb"]
    assert bomb["exit_code"] != 0
    assert bomb["timed_out"] or "BlockingIOError" in bomb["stderr"]
    assert bomb["duration_ms"] < 10_000


def test_print_is_capped_and_the_next_run_works(outcomes: dict[str, Any]) -> None:
    assert outcomes["print"]["stdout_truncated"]
    assert len(outcomes["print"]["stdout"]) == 1_000_000
    assert outcomes["ok"]["result"] == 42


def test_no_sandbox_process_outlives_its_run(outcomes: dict[str, Any]) -> None:
    import psutil

    # an escaped fork-bomb child would be an orphan (ppid 1) still running the runner
    orphans = [p.pid for p in psutil.process_iter(["uids", "cmdline", "ppid"])
               if p.info["uids"] and p.info["uids"].real == NOBODY_UID
               and p.info["ppid"] == 1
               and any("runner.py" in part for part in (p.info["cmdline"] or []))]
    assert orphans == []
    assert outcomes["forkbomb"]["killed_by"] in (None, "SIGKILL")
