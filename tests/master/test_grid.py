"""``python -m scripts.grid`` as ``make up`` runs it (without the UI): up, usable, stops clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from database.backends.sqlite import SqliteStore
from database.models import WorkerStatus
from nexus_common.signing import SigningAuth
from tests.support.servers import REPO_ROOT
from tests.support.waiting import wait_until


def test_grid_starts_workers_registers_them_and_stops_on_sigterm(tmp_path: Path) -> None:
    registry = tmp_path / "registry.db"
    log = tmp_path / "grid.log"
    env = {k: v for k, v in os.environ.items() if k not in ("NADG_AUTH_TOKEN", "DATABASE_URL")}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scripts.grid", "--workers", "2",
                                 "--registry", str(registry)], cwd=REPO_ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(lambda: "Ctrl-C stops everything" in log.read_text()
                       or proc.poll() is not None, timeout=90, what="the grid to come up")
            text = log.read_text()
            assert proc.poll() is None, text
            token = text.split("NADG_AUTH_TOKEN=")[1].split()[0]
            store = SqliteStore(registry)
            workers = store.list_workers([WorkerStatus.ACTIVE])
            assert len(workers) == 2
            for w in workers:
                assert w.vm_url in text
                assert httpx.get(w.vm_url + "/health", timeout=5).json()["status"] == "ok"
                denied = httpx.get(w.vm_url + "/status", timeout=5)
                assert denied.status_code == 401
                allowed = httpx.get(w.vm_url + "/status", timeout=5,
                                    auth=SigningAuth(token))
                assert allowed.status_code == 200
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            assert "stopped" in log.read_text()
            assert {w.status for w in store.list_workers()} == {WorkerStatus.OFFLINE}
            for w in workers:
                try:
                    httpx.get(w.vm_url + "/health", timeout=1)
                    raise AssertionError(f"{w.vm_url} still answers after the grid stopped")
                except httpx.TransportError:
                    pass
            store.close()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_grid_with_an_unusable_registry_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = subprocess.run([sys.executable, "-m", "scripts.grid", "--workers", "1",
                           "--registry", str(blocker / "registry.db")], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: cannot open the SQLite registry")


def _processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``marker`` (the grid's children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize(("command", "sig", "expected_rc"), [
    (["-m", "scripts.grid", "--workers", "2"], signal.SIGTERM, 0),
    (["-m", "master_app", "run", "noop 10", "--local", "2"], signal.SIGINT, 130),
], ids=["grid-sigterm", "cli-ctrl-c"])
def test_stops_at_once_when_told_to_while_workers_start(
        tmp_path: Path, command: list[str], sig: signal.Signals, expected_rc: int) -> None:
    marker = f"{os.getpid()}-{tmp_path.name}"
    env = {k: v for k, v in os.environ.items() if k not in ("NADG_AUTH_TOKEN", "DATABASE_URL")}
    env["NADG_TEST_GRID_MARK"] = marker
    env["NADG_REGISTRY"] = str(tmp_path / "registry.db")
    proc = subprocess.Popen([sys.executable, *command], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        # The parent and its two workers, spawned and not yet answering (imports take a
        # while). Detected as early as the second fork, which is where a signal used to
        # land inside Popen and orphan that worker.
        wait_until(lambda: len(_processes_with(f"NADG_TEST_GRID_MARK={marker}")) >= 3
                   or proc.poll() is not None, timeout=60, what="the workers to be spawned")
        os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=40)
        assert proc.returncode == expected_rc, out
        assert "NEXUS Grid is up" not in out and "Traceback" not in out, out
        wait_until(lambda: not _processes_with(f"NADG_TEST_GRID_MARK={marker}"), timeout=15,
                   what="every worker started to be gone")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
