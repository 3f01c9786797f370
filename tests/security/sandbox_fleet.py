"""Real workers for the sandbox attacks (fixtures re-exported by conftest.py): every
isolation level this machine offers, each as root and as a non-root user (uid 1000 like
the container, else ``nobody``).

Each worker is started with the container's command (``uvicorn worker_node.main:app``),
forced to one level with ``NADG_SANDBOX_LEVEL``; the whole fleet starts at once, once per
session. A level this machine cannot give is skipped with the worker's own reason.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import signal
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import REPO_ROOT, free_port
from tests.support.waiting import wait_until

SYSTEM_PYTHON = "/usr/bin/python3"
ROOT_LEVELS = ("namespaces", "landlock", "uid")
NONROOT_LEVELS = ("namespaces", "landlock", "process")
#: In every fleet worker's environment: no sandboxed run may ever see it.
SECRET = "sandbox-must-never-see-" + secrets.token_hex(8)
DISK_MB = 16


def nonroot_uid() -> int:
    """uid 1000 (the container's user) when it exists here, else ``nobody``."""
    try:
        return pwd.getpwuid(1000).pw_uid
    except KeyError:
        return 65534


@dataclass
class Target:
    """One running worker and how to attack it."""

    user: str
    level: str
    port: int
    home: Path
    proc: subprocess.Popen[bytes] | None = None
    error: str = ""
    log: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return f"{self.user}-{self.level}"

    def serving(self) -> bool:
        """The worker process lives and answers ``/health``."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            return httpx.get(self.url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def run(self, code: str, input_value: Any = None, timeout_s: float = 15.0,
            sid: str = "attack") -> dict[str, Any]:
        """One python subtask; the worker's answer."""
        body = {"id": sid, "task_id": "security", "kind": "python",
                "payload": {"code": code, "input": input_value}, "timeout_s": timeout_s}
        answer: dict[str, Any] = httpx.post(self.url + "/execute", json=body,
                                            timeout=timeout_s + 30).json()
        return answer

    def run_batch(self, code: str, count: int, timeout_s: float) -> list[dict[str, Any]]:
        """``count`` copies of one python subtask in one batch (run ``capacity`` at once)."""
        body = [{"id": f"batch-{i}", "task_id": "security", "kind": "python",
                 "payload": {"code": code}, "timeout_s": timeout_s} for i in range(count)]
        answer: list[dict[str, Any]] = httpx.post(
            self.url + "/execute/batch", json=body, timeout=count * timeout_s + 60).json()
        return answer

    def status(self) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(self.url + "/status", timeout=10).json()
        return answer

    def assert_still_serves(self) -> None:
        """The worker answers and computes the next subtask correctly."""
        assert self.serving(), f"worker {self.name} is gone: {self.log_text()[-2000:]}"
        after = self.run("RESULT = sum(INPUT)", [1, 2, 3], sid="after")
        assert after["status"] == "completed" and after["output"]["result"] == 6, after

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def start_worker(user: str, level: str, base: Path, **env: str) -> Target:
    """Start (do not wait for) one worker as ``user`` (root|nonroot) at ``level``."""
    home = Path(tempfile.mkdtemp(prefix=f"{user}-{level}-", dir=base))
    target = Target(user, level, free_port(), home, log=home / "worker.log")
    home.chmod(0o755)  # a root worker's per-run uids must reach their folders in tmp/
    (home / "tmp").mkdir(mode=0o755)
    values = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
              "TMPDIR": str(home / "tmp"), "PYTHONUNBUFFERED": "1",
              "NADG_ALLOW_INSECURE": "1", "NADG_REGISTER": "0", "WORKER_ID": target.name,
              "NADG_CAPACITY": "2", "NADG_SANDBOX_LEVEL": level,
              "NADG_SANDBOX_DISK_MB": str(DISK_MB), "NADG_SANDBOX_MEMORY_MB": "256",
              "NADG_SANDBOX_MAX_PROCS": "16", "GEMINI_API_KEY": SECRET,
              "NADG_LOG_LEVEL": "INFO", "HF_HUB_OFFLINE": "1", **env}
    if level == "process":
        values.setdefault("NADG_SANDBOX_ALLOW_WEAK", "1")
    python = os.path.join(REPO_ROOT, ".venv", "bin", "python")
    kwargs: dict[str, Any] = {}
    if user == "nonroot" and os.geteuid() == 0:
        uid = nonroot_uid()
        python = SYSTEM_PYTHON
        values["PYTHONPATH"] = f"{REPO_ROOT}:{sysconfig.get_paths()['purelib']}"
        os.chown(home, uid, uid)
        os.chown(home / "tmp", uid, uid)
        kwargs = {"user": uid, "group": uid, "extra_groups": []}
    log = open(target.log, "wb")  # noqa: SIM115 - the worker writes it for its lifetime
    target.proc = subprocess.Popen(
        [python, "-m", "uvicorn", "worker_node.main:app", "--host", "127.0.0.1",
         "--port", str(target.port)],
        cwd=home, env=values, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        **kwargs)
    log.close()
    return target


def wait_ready(target: Target, timeout: float = 90.0) -> None:
    """Wait until it serves; otherwise keep why it did not start in ``target.error``."""
    try:
        wait_until(lambda: target.serving() or (target.proc is not None
                                                and target.proc.poll() is not None),
                   timeout=timeout, interval=0.1, what=f"worker {target.name}")
    except AssertionError as exc:
        target.error = str(exc)
    if not target.serving():
        lines = [line for line in target.log_text().splitlines() if line.strip()]
        target.error = target.error or "\n".join(lines[-6:])


def fleet_keys() -> list[tuple[str, str]]:
    keys = [("root", level) for level in ROOT_LEVELS] if os.geteuid() == 0 else []
    return keys + [("nonroot", level) for level in NONROOT_LEVELS]


@pytest.fixture(scope="session")
def security_base() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="nadg-security-"))
    base.chmod(0o755)
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


#: Workers that an attack is allowed to kill, started with the fleet (all start at once):
#: name -> (user, level).
SPARES = {"weak-victim": ("nonroot", "process"), "crash-namespaces": ("root", "namespaces"),
          "crash-landlock": ("nonroot", "landlock")}


@pytest.fixture(scope="session")
def fleet(security_base: Path) -> Iterator[dict[Any, Target]]:
    """Every (user, level) worker, and the spares (by name), started together."""
    if not os.path.exists(SYSTEM_PYTHON) and os.geteuid() == 0:
        pytest.skip(f"{SYSTEM_PYTHON} is needed to run a non-root worker")
    targets: dict[Any, Target] = {key: start_worker(*key, security_base)
                                  for key in fleet_keys()}
    if os.geteuid() == 0:
        targets.update({name: start_worker(*key, security_base)
                        for name, key in SPARES.items()})
    for target in targets.values():
        wait_ready(target)
    yield targets
    for target in targets.values():
        target.stop()


def spare(fleet: dict[Any, Target], name: str) -> Target:
    """A spare worker that a test may kill; skipped where it could not start."""
    worker = fleet.get(name)
    if worker is None:
        pytest.skip("spare workers run as another user: the suite must run as root")
    if not worker.serving():
        pytest.skip(f"spare {name} is not available here: {worker.error[-500:]}")
    return worker


@pytest.fixture(params=fleet_keys(), ids=lambda key: f"{key[0]}-{key[1]}")
def target(request: pytest.FixtureRequest, fleet: dict[Any, Target]) -> Target:
    """One fleet worker; skipped (with its reason) where this machine lacks the level."""
    worker = fleet[request.param]
    if not worker.serving():
        pytest.skip(f"level {worker.level} as {worker.user} is not available here: "
                    f"{worker.error[-500:]}")
    return worker


def processes_with(token: str) -> list[int]:
    """Host processes whose command line contains ``token``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as f:
                if token.encode() in f.read():
                    found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (its children, theirs, ...)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{parent}/task"):
                with contextlib.suppress(OSError):
                    kids = [int(c) for c in
                            Path(f"/proc/{parent}/task/{task}/children").read_text().split()]
                    found += kids
                    todo += kids
    return found


def children_states(pid: int) -> list[str]:
    """The state letters (R, S, Z ...) of ``pid``'s children."""
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
                with contextlib.suppress(OSError):
                    stat = Path(f"/proc/{child}/stat").read_text()
                    states.append(stat.rsplit(")", 1)[1].split()[0])
    return states
