"""Run untrusted Python in a contained subprocess.

What the child gets:

* a fresh temporary working directory (deleted afterwards) and ``HOME`` pointing at it;
* an environment with only safe variables (``PATH``, locale, timezone): no token, API keys
  or database URLs;
* ``stdin`` closed, ``stdout``/``stderr`` read while streaming and capped (the rest is
  drained and dropped, so a huge print cannot fill the worker's memory);
* rlimits set by the runner before the user's code runs: CPU seconds, address space,
  file size, process count (soft = hard, so the code cannot raise them);
* its own session / process group, killed as a whole at the wall-clock deadline and after
  the run (so forked children do not outlive it);
* when the worker runs as root, the child runs as ``nobody`` (uid 65534), so it cannot
  write outside its directory.

See worker_node/README.md for what this does *not* protect against.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

RUNNER = Path(__file__).with_name("sandbox_runner.py")
SAFE_ENV_VARS = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
NOBODY_UID = 65534
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Resource limits of one sandboxed run."""

    timeout_s: float
    memory_bytes: int = 1024 * 1024 * 1024
    output_bytes: int = 1_000_000
    file_bytes: int = 16 * 1024 * 1024
    max_procs: int = 32
    interpreter: str | None = None


@dataclass(frozen=True, slots=True)
class SandboxOutcome:
    """How a sandboxed run ended."""

    exit_code: int
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    result: Any
    result_error: str | None
    duration_ms: float

    @property
    def killed_by(self) -> str | None:
        """The signal name that ended the process, if a signal did."""
        if self.exit_code < 0:
            try:
                return signal.Signals(-self.exit_code).name
            except ValueError:
                return f"signal {-self.exit_code}"
        return None

    def as_output(self) -> dict[str, Any]:
        """The ``output`` dict of a python subtask's result."""
        return {
            "exit_code": self.exit_code, "stdout": self.stdout, "stderr": self.stderr,
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated, "result": self.result,
            "result_error": self.result_error, "killed_by": self.killed_by,
            "timed_out": self.timed_out,
        }


class _CappedReader(threading.Thread):
    """Drains a pipe, keeping at most ``cap`` bytes."""

    def __init__(self, stream: IO[bytes], cap: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.cap = stream, cap
        self.kept = bytearray()
        self.truncated = False

    def run(self) -> None:
        try:
            while chunk := self.stream.read1(_CHUNK):  # type: ignore[attr-defined]
                room = self.cap - len(self.kept)
                if room > 0:
                    self.kept += chunk[:room]
                if len(chunk) > room:
                    self.truncated = True
        except (OSError, ValueError):
            return

    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace")


def _safe_env(home: str) -> dict[str, str]:
    env = {k: v for k in SAFE_ENV_VARS if (v := os.environ.get(k)) is not None}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(HOME=home, TMPDIR=home, PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="utf-8",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _tasks_of_uid(uid: int) -> int:
    """How many processes/threads ``uid`` runs now (RLIMIT_NPROC counts threads)."""
    import psutil

    count = 0
    for proc in psutil.process_iter(["uids", "num_threads"]):
        info = proc.info
        if info.get("uids") is not None and info["uids"].real == uid:
            count += int(info.get("num_threads") or 1)
    return count


def _world_executable(path: str) -> bool:
    """True when any user may run ``path`` (every directory on the way is o+x)."""
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & stat.S_IXOTH:
            return False
        return all(parent.stat().st_mode & stat.S_IXOTH for parent in real.parents)
    except OSError:
        return False


@functools.cache
def sandbox_interpreter(configured: str | None, drop_to_nobody: bool) -> str:
    """The Python the sandbox runs: ``configured``, else this one, else a system python3
    that ``nobody`` can execute (when the worker is root and this interpreter sits in a
    private directory such as /root/.pyenv)."""
    if configured:
        return configured
    if not drop_to_nobody or _world_executable(sys.executable):
        return sys.executable
    for candidate in ("/usr/local/bin/python3", "/usr/bin/python3"):
        if _world_executable(candidate):
            logger.warning("sandbox: %s is not executable by nobody; sandboxed code runs "
                           "on %s (standard library only)", sys.executable, candidate)
            return candidate
    raise RuntimeError("no Python interpreter that the sandbox user 'nobody' can execute; "
                       "set NADG_SANDBOX_PYTHON or run the worker as a non-root user")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return


def _wait(proc: subprocess.Popen[bytes], deadline: float,
          cancel: threading.Event | None) -> bool:
    """Wait for ``proc`` until ``deadline`` or ``cancel``; True when it was cut short."""
    while True:
        remaining = deadline - time.monotonic()
        step = remaining if cancel is None else min(remaining, 0.05)
        try:
            proc.wait(timeout=max(step, 0))
            return False
        except subprocess.TimeoutExpired:
            if remaining <= step or (cancel is not None and cancel.is_set()):
                return True


def run_python(code: str, input_value: Any, limits: SandboxLimits,
               cancel: threading.Event | None = None) -> SandboxOutcome:
    """Run ``code`` (with ``INPUT`` = ``input_value``) in the sandbox; never raises for
    anything the code does. Setting ``cancel`` kills the run early (as at the deadline)."""
    as_root = os.geteuid() == 0
    run_uid = NOBODY_UID if as_root else os.geteuid()
    job_dir = tempfile.mkdtemp(prefix="nadg-py-")
    try:
        shutil.copyfile(RUNNER, f"{job_dir}/runner.py")
        cpu = math.ceil(limits.timeout_s) + 1  # the wall clock should strike first
        nproc = _tasks_of_uid(run_uid) + limits.max_procs
        job = {"code": code, "input": input_value}
        Path(job_dir, "job.json").write_text(json.dumps(job), encoding="utf-8")
        if as_root:
            for path in (job_dir, f"{job_dir}/runner.py", f"{job_dir}/job.json"):
                os.chown(path, NOBODY_UID, NOBODY_UID)
        prelude = (
            "import resource as r,runpy,sys;"
            f"[r.setrlimit(k,(v,v)) for k,v in ((r.RLIMIT_CPU,{cpu}),"
            f"(r.RLIMIT_AS,{limits.memory_bytes}),(r.RLIMIT_FSIZE,{limits.file_bytes}),"
            f"(r.RLIMIT_NPROC,{nproc}),(r.RLIMIT_CORE,0))];"
            "sys.argv=['runner.py',sys.argv[1]];runpy.run_path('runner.py',run_name='__main__')"
        )
        start = time.monotonic()
        proc = subprocess.Popen(
            [sandbox_interpreter(limits.interpreter, as_root), "-I", "-c", prelude, job_dir],
            cwd=job_dir, env=_safe_env(job_dir), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            user=run_uid if as_root else None, group=run_uid if as_root else None,
            extra_groups=[] if as_root else None, close_fds=True,
        )
        assert proc.stdout is not None and proc.stderr is not None  # PIPE was given
        readers = [_CappedReader(proc.stdout, limits.output_bytes),
                   _CappedReader(proc.stderr, limits.output_bytes)]
        for reader in readers:
            reader.start()
        timed_out = _wait(proc, start + limits.timeout_s, cancel)
        _kill_group(proc.pid)
        exit_code = proc.wait()
        timed_out = timed_out or exit_code == -signal.SIGXCPU  # out of CPU seconds
        for reader in readers:
            reader.join(timeout=2.0)
        proc.stdout.close()
        proc.stderr.close()
        duration_ms = (time.monotonic() - start) * 1000
        result, result_error = None, None
        result_file = Path(job_dir, "result.json")
        if result_file.is_file():
            try:
                data = json.loads(result_file.read_text(encoding="utf-8"))
                result, result_error = data.get("result"), data.get("result_error")
            except (ValueError, OSError, AttributeError) as exc:
                result_error = f"could not read RESULT: {exc}"
        return SandboxOutcome(
            exit_code=exit_code, stdout=readers[0].text(), stderr=readers[1].text(),
            stdout_truncated=readers[0].truncated, stderr_truncated=readers[1].truncated,
            timed_out=timed_out, result=result, result_error=result_error,
            duration_ms=duration_ms,
        )
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)
