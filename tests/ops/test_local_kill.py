"""``run --local N`` killed with SIGKILL: its workers die with it; its registry is swept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from master_app.local_grid import OWNER_FILE, sweep_throwaways
from tests.support.servers import REPO_ROOT
from tests.support.waiting import wait_until


def _processes_with(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose environment holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_kill_9_of_a_local_run_leaves_no_worker_and_no_registry(tmp_path: Path) -> None:
    marker = f"NADG_TEST_KILL_MARK={os.getpid()}-{tmp_path.name}"
    env = {k: v for k, v in os.environ.items() if k not in ("NADG_AUTH_TOKEN", "DATABASE_URL")}
    env["NADG_TEST_KILL_MARK"] = marker.split("=", 1)[1]
    env["TMPDIR"] = str(tmp_path)  # where its throwaway registry goes
    log = tmp_path / "run.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "master_app", "run", "noop 40 sleep 2000", "--local", "2",
             "--no-progress"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True)
    try:
        wait_until(lambda: "task " in log.read_text() or proc.poll() is not None, timeout=90,
                   what="the run to submit its task")
        assert proc.poll() is None, log.read_text()
        assert len(_processes_with(marker)) == 3  # the master and its two workers
        folders = list(tmp_path.glob("nadg-local-*"))
        assert len(folders) == 1
        owner = json.loads((folders[0] / OWNER_FILE).read_text())
        assert owner["pid"] == proc.pid

        os.kill(proc.pid, signal.SIGKILL)  # the master only: no chance to clean up
        proc.wait(timeout=10)
        wait_until(lambda: not _processes_with(marker), timeout=15,
                   what="every worker of the killed run to be gone")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in _processes_with(marker):  # only if the test failed: ours, by marker
            os.kill(pid, signal.SIGKILL)

    # Its registry stayed behind (SIGKILL runs no cleanup); the next run sweeps it.
    assert folders[0].is_dir()
    live = tmp_path / "nadg-local-live"
    live.mkdir()
    (live / OWNER_FILE).write_text(json.dumps({"pid": os.getpid()}))  # a run still going
    assert sweep_throwaways("nadg-local-", root=tmp_path) == folders
    assert not folders[0].exists() and live.is_dir()
