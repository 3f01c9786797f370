"""Run untrusted Python in a contained subprocess.

Each run is a *keeper* process started from the runner source held in memory (see
:mod:`worker_node.sandbox_runner`; there is no runner file a run could rewrite), which
forks the *payload* that runs the code. The job goes in on stdin, the result comes back
on a pipe of its own, stdout and stderr are read as they stream and capped. How far the
run is isolated depends on the level this machine allows (:mod:`worker_node.sandbox_isolation`):
the worker picks it once at startup (:func:`configure`), reports it in ``/status`` and
logs it. On every level:

* rlimits set before the code runs, soft = hard: CPU seconds, address space, file size,
  processes (exact per run with namespaces or a per-run uid), no core dumps;
* an environment with only ``PATH``, locale and timezone: no token, key or database URL;
* ``no_new_privs`` and a seccomp filter (:mod:`worker_node.sandbox_seccomp`): no socket
  but netlink (no host service reached by a Unix socket path, no network without the
  opt-in), no io_uring, and without namespaces no System V IPC, POSIX message queue or
  keyring (objects that outlive the run);
* the wall-clock deadline stops the keeper (which kills and reaps everything below it),
  then kills its process group; the keeper dies with the worker (``PR_SET_PDEATHSIG``);
* the worker is a child subreaper and reaps whatever escapes (:mod:`worker_node.sandbox_procs`).

See worker_node/README.md for what each level does *not* protect against.
"""

from __future__ import annotations

import contextlib
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
from typing import Any

from worker_node import sandbox_procs
from worker_node.sandbox_isolation import (
    Isolation,
    SandboxRefused,
    candidates,
    refusal,
)
from worker_node.sandbox_watch import CappedReader, stop, wait_for_run, write_job

logger = logging.getLogger(__name__)

RUNNER = Path(__file__).with_name("sandbox_runner.py")
LANDLOCK = Path(__file__).with_name("sandbox_landlock.py")
SECCOMP = Path(__file__).with_name("sandbox_seccomp.py")
SAFE_ENV_VARS = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
NOBODY_UID = 65534
DEFAULT_DISK_BYTES = 64 * 1024 * 1024
_SYSTEM_READ_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt",
                      "/proc", "/sys", "/dev")


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Resource limits of one sandboxed run."""

    timeout_s: float
    memory_bytes: int = 1024 * 1024 * 1024
    output_bytes: int = 1_000_000
    file_bytes: int = 16 * 1024 * 1024
    max_procs: int = 32
    interpreter: str | None = None
    disk_bytes: int | None = None  # None = what :func:`prepare` was given (64 MiB)
    result_bytes: int = 16 * 1024 * 1024


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


# --- configuration: one isolation level per worker process --------------------------------

_state: dict[str, Any] = {}
_pool = sandbox_procs.UidPool()


@functools.cache
def runner_code() -> str:
    """The keeper's source: the runner with the Landlock and seccomp modules pasted in
    for their imports."""
    runner = RUNNER.read_text(encoding="utf-8")
    for module, line in ((LANDLOCK, "from worker_node.sandbox_landlock import restrict\n"),
                         (SECCOMP, "from worker_node.sandbox_seccomp import confine\n")):
        if runner.count(line) != 1:
            raise RuntimeError(f"{RUNNER} must import {module.stem} with exactly {line!r}")
        source = module.read_text(encoding="utf-8").replace(
            "from __future__ import annotations\n", "")
        runner = runner.replace(line, source)
    return runner


def configure(level: str = "auto", *, allow_weak: bool = False, allow_network: bool = False,
              interpreter: str | None = None) -> Isolation:
    """Pick the strongest working level at or below ``level`` (a trivial job must run
    correctly under it) and use it for every later run; raises :class:`SandboxRefused`
    when none works, or when only a weak one does and ``allow_weak`` is False."""
    from worker_node.sandbox_landlock import abi_version

    root = os.geteuid() == 0
    tried = []
    for isolation in candidates(level, root=root, landlock_abi=abi_version(),
                                allow_network=allow_network):
        outcome = _run(isolation, "RESULT = 6 * 7", None, SandboxLimits(
            timeout_s=20, interpreter=interpreter, memory_bytes=512 * 2**20), None)
        if outcome.result == 42 and outcome.exit_code == 0:
            if isolation.weak and not allow_weak:
                raise SandboxRefused(refusal(isolation))
            _state["isolation"] = isolation
            return isolation
        tried.append(f"{isolation.level}: exit {outcome.exit_code}, "
                     f"{(outcome.stderr or outcome.result_error or '').strip()[-300:]}")
        logger.info("sandbox level %s does not work here: %s", isolation.level, tried[-1])
    raise SandboxRefused("no sandbox level works on this machine (" + "; ".join(tried)
                         + f"); NADG_SANDBOX_LEVEL={level}")


def sandbox_report() -> dict[str, Any] | None:
    """What ``/status`` shows under ``sandbox``: the configured level, None before any."""
    isolation: Isolation | None = _state.get("isolation")
    return isolation.report() if isolation is not None else None


def current_isolation() -> Isolation:
    """The configured level (configured with defaults on first use)."""
    isolation = _state.get("isolation")
    if isolation is None:
        isolation = configure(allow_weak=True)
    return isolation


def prepare(level: str = "auto", *, allow_weak: bool = False, allow_network: bool = False,
            interpreter: str | None = None,
            disk_bytes: int = DEFAULT_DISK_BYTES, own_process: bool = True) -> Isolation:
    """Worker startup: become the reaper of escaped orphans, clean what a crashed
    predecessor left, pick the level and log what it contains. ``disk_bytes``: what one
    run may write in all (its private tmpfs, or its polled folder). ``own_process``
    False (an app embedded in another program, as in tests): neither reap nor kill
    anything outside this worker's own runs."""
    _state["disk_bytes"] = disk_bytes
    subreaper = own_process and sandbox_procs.set_subreaper()
    if subreaper:
        threading.Thread(target=_reap_forever, name="nadg-sandbox-reaper", daemon=True).start()
    if own_process:
        cleaned = sandbox_procs.clean_predecessors()
        if cleaned["folders"] or cleaned["processes"]:
            logger.warning("sandbox: removed %d run folders and killed %d processes left "
                           "by a previous worker", cleaned["folders"], cleaned["processes"])
    isolation = configure(level, allow_weak=allow_weak, allow_network=allow_network,
                          interpreter=interpreter)
    report = isolation.report()
    log = logger.warning if isolation.weak else logger.info
    log("python sandbox level %s%s: processes: %s; signals: %s; files: %s; network: %s%s",
        isolation.level, " (WEAK, allowed by NADG_SANDBOX_ALLOW_WEAK=1)" if isolation.weak
        else "", report["processes"], report["signals"], report["filesystem"],
        report["network"], "" if subreaper else "; NOT a subreaper (orphans go to init)")
    return isolation


def _reap_forever(interval_s: float = 5.0) -> None:
    """Between runs too: reap orphans that reach the worker (a keeper killed by its run)."""
    while True:
        time.sleep(interval_s)
        try:
            sandbox_procs.sweep_orphans()
        except Exception:  # never let the reaper thread die: orphans would pile up
            logger.exception("sandbox reaper")


# --- one run ------------------------------------------------------------------------------

def _safe_env(home: str) -> dict[str, str]:
    env = {k: v for k in SAFE_ENV_VARS if (v := os.environ.get(k)) is not None}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(HOME=home, TMPDIR=home, PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="utf-8",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


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
def sandbox_interpreter(configured: str | None, other_uid: bool) -> str:
    """The Python the sandbox runs: ``configured``, else this one, else a system python3
    that any uid can execute (when the worker is root and this interpreter sits in a
    private directory such as /root/.pyenv)."""
    if configured:
        return configured
    if not other_uid or _world_executable(sys.executable):
        return sys.executable
    for candidate in ("/usr/local/bin/python3", "/usr/bin/python3"):
        if _world_executable(candidate):
            logger.warning("sandbox: %s is not executable by other users; sandboxed code "
                           "runs on %s (its own packages only)", sys.executable, candidate)
            return candidate
    raise RuntimeError("no Python interpreter that the sandbox's uid can execute; "
                       "set NADG_SANDBOX_PYTHON or run the worker as a non-root user")


@functools.cache
def _read_paths(interpreter: str) -> tuple[str, ...]:
    """What a run may read under Landlock: system folders and ``interpreter``'s own
    prefix and import path (never the worker's source tree or its working folder)."""
    probe = subprocess.run(
        [interpreter, "-I", "-c",
         "import json,sys;print(json.dumps([sys.prefix,sys.base_prefix,sys.exec_prefix]"
         "+sys.path))"], capture_output=True, text=True, timeout=30, check=True,
        env={"PATH": "/usr/bin:/bin"})
    paths = [p for p in json.loads(probe.stdout) if p and os.path.exists(p)]
    hidden = {str(Path(__file__).resolve().parents[1]), os.getcwd()}
    real = os.path.dirname(os.path.realpath(interpreter))
    allowed = [p for p in (*_SYSTEM_READ_PATHS, real, *paths) if p not in hidden]
    return tuple(dict.fromkeys(allowed))


@functools.cache
def _run_folder_root(other_uid: bool) -> str:
    """Where run folders go: the temporary folder, or /tmp when a per-run uid could not
    reach that one (a private $TMPDIR of a root worker)."""
    root = tempfile.gettempdir()
    if other_uid and not all(parent.stat().st_mode & stat.S_IXOTH
                             for parent in (Path(root), *Path(root).parents)):
        logger.warning("sandbox: %s is not reachable by per-run uids; run folders go to /tmp",
                       root)
        return "/tmp"
    return root


def run_python(code: str, input_value: Any, limits: SandboxLimits,
               cancel: threading.Event | None = None) -> SandboxOutcome:
    """Run ``code`` (with ``INPUT`` = ``input_value``) in the sandbox; never raises for
    anything the code does. Setting ``cancel`` kills the run early (as at the deadline)."""
    return _run(current_isolation(), code, input_value, limits, cancel)


def _run(isolation: Isolation, code: str, input_value: Any, limits: SandboxLimits,
         cancel: threading.Event | None) -> SandboxOutcome:
    uid = _pool.acquire() if isolation.run_uids else None
    disk_bytes = limits.disk_bytes or int(_state.get("disk_bytes", DEFAULT_DISK_BYTES))
    workdir = None
    result_r = result_w = -1
    try:
        interpreter = sandbox_interpreter(limits.interpreter, uid is not None)
        if not isolation.namespaces:
            workdir = tempfile.mkdtemp(prefix=f"{sandbox_procs.RUN_DIR_PREFIX}{os.getpid()}-",
                                       dir=_run_folder_root(uid is not None))
            if uid is not None:
                os.chown(workdir, uid, uid)
        home = workdir or "/tmp"
        cpu = math.ceil(limits.timeout_s) + 1  # the wall clock should strike first
        # with namespaces or a per-run uid, the count is this run's alone: exact
        nproc = limits.max_procs + 1 if isolation.namespaces or uid is not None else \
            _tasks_of_uid(os.geteuid()) + limits.max_procs
        result_r, result_w = os.pipe()
        config = {
            "nadg_sandbox": 1, "parent_pid": os.getpid(), "result_fd": result_w,
            "namespaces": isolation.namespaces, "allow_network": isolation.allow_network,
            "landlock": isolation.landlock_abi, "disk_bytes": disk_bytes,
            "workdir": home, "hidden_paths": [str(Path(__file__).resolve().parents[1])],
            "read_paths": list(_read_paths(interpreter)) if isolation.landlock_abi else [],
            "limits": {"cpu": cpu, "as": limits.memory_bytes, "fsize": limits.file_bytes,
                       "nproc": nproc, "core": 0},
        }
        start = time.monotonic()
        with sandbox_procs.spawning() as live:
            proc = subprocess.Popen(
                [interpreter, "-I", "-c", runner_code(), json.dumps(config)],
                cwd=workdir or "/", env=_safe_env(home), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                user=uid, group=uid, extra_groups=[] if uid is not None else None,
                close_fds=True, pass_fds=(result_w,),
            )
            live.add(proc.pid)
        os.close(result_w)
        result_w = -1
        assert proc.stdout is not None and proc.stderr is not None  # PIPE was given
        readers = [CappedReader(proc.stdout, limits.output_bytes),
                   CappedReader(proc.stderr, limits.output_bytes),
                   CappedReader(os.fdopen(result_r, "rb"), limits.result_bytes)]
        result_r = -1
        for reader in readers:
            reader.start()
        write_job(proc, json.dumps({"code": code, "input": input_value}).encode())
        cut = wait_for_run(proc, start + limits.timeout_s, cancel, workdir, disk_bytes)
        if cut is not None:
            stop(proc)
        exit_code = proc.wait()
        sandbox_procs.finished(proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything left in its group
        if uid is not None:
            _pool.clean(uid, files=not isolation.namespaces and not isolation.landlock_abi)
        sandbox_procs.sweep_orphans()
        timed_out = cut == "timeout" or exit_code == -signal.SIGXCPU  # out of CPU seconds
        for reader in readers:
            reader.join(timeout=2.0)
        for stream in (proc.stdout, proc.stderr, readers[2].stream):
            stream.close()
        duration_ms = (time.monotonic() - start) * 1000
        result, result_error = _result(readers[2], cut, disk_bytes, limits.result_bytes)
        return SandboxOutcome(
            exit_code=exit_code, stdout=readers[0].text(), stderr=readers[1].text(),
            stdout_truncated=readers[0].truncated, stderr_truncated=readers[1].truncated,
            timed_out=timed_out, result=result, result_error=result_error,
            duration_ms=duration_ms,
        )
    finally:
        for fd in (result_r, result_w):
            if fd >= 0:
                os.close(fd)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        if uid is not None:
            _pool.release(uid)


def _result(reader: CappedReader, cut: str | None, disk_bytes: int,
            result_bytes: int) -> tuple[Any, str | None]:
    if cut == "disk":
        return None, (f"the run wrote more than {disk_bytes} bytes to its folder and was "
                      "killed")
    if reader.truncated:
        return None, f"RESULT is larger than {result_bytes} bytes"
    if not reader.kept:
        return None, None
    try:
        data = json.loads(reader.kept)
        return data.get("result"), data.get("result_error")
    except (ValueError, AttributeError) as exc:
        return None, f"could not read RESULT: {exc}"


def _tasks_of_uid(uid: int) -> int:
    """How many processes/threads ``uid`` runs now (RLIMIT_NPROC counts threads)."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError):
                fields = sandbox_procs.status_fields(entry)
                if fields.get("Uid", "").split()[:1] == [str(uid)]:
                    count += int(fields.get("Threads", "1"))
    return count
