"""The sandbox's own process: ``python -I -c <this source> CONFIG_JSON`` (standard library only).

The worker never runs this file from disk: it passes this source (with the Landlock module
pasted in place of its import, see ``worker_node.sandbox.runner_code``) on the command
line, so there is no runner file a run could rewrite. The job (``{"code", "input"}``)
arrives on stdin; the result leaves on the pipe ``config["result_fd"]``: never a file.

Two processes:

* the **keeper** (this process as started): dies with the worker (``PR_SET_PDEATHSIG``),
  is a child subreaper (orphans of the run come back to it), optionally creates new user,
  mount, PID, IPC and network namespaces, forks the payload, waits for it, then kills and
  reaps everything the payload left behind. It runs no user code.
* the **payload** (its child; PID 1 of the new PID namespace when there is one): makes the
  file system read-only but for a private size-bounded tmpfs (namespaces), restricts itself
  with Landlock, drops every capability, sets ``no_new_privs`` and a seccomp filter
  (:mod:`worker_node.sandbox_seccomp`: no sockets but netlink, no io_uring, no IPC objects
  that outlive the run), sets rlimits, then runs the user's code.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
import traceback
from typing import Any

from worker_node.sandbox_landlock import restrict
from worker_node.sandbox_seccomp import confine

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 0x4000, 1 << 18
SYS_MOUNT_SETATTR, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, 0x8000, 1
EXIT_SETUP_FAILED = 125
PR_SET_NO_NEW_PRIVS = 38

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _prctl(option: int, arg: int) -> None:
    _check(_LIBC.prctl(option, arg, 0, 0, 0), f"prctl({option})")


def _die_with(parent: int, signum: int = signal.SIGKILL) -> None:
    """Get ``signum`` when ``parent`` goes; exit now if it is already gone."""
    _prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:
        os._exit(EXIT_SETUP_FAILED)


def _enter_namespaces(allow_network: bool) -> None:
    """New user (mapping only our own uid/gid), mount, PID, IPC and network namespaces."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC
    if not allow_network:
        flags |= CLONE_NEWNET
    _check(_LIBC.unshare(flags), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w", encoding="ascii") as f:
            f.write(text)


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(_LIBC.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                       flags, data and data.encode()), f"mount {target}")


def _private_filesystem(disk_bytes: int) -> list[str]:
    """Everything read-only, then one tmpfs of ``disk_bytes`` at /tmp, also seen at
    /dev/shm and /var/tmp (one size bound for all three). Returns the writable paths."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    attr = _MountAttr(attr_set=MOUNT_ATTR_RDONLY)
    _check(int(_LIBC.syscall(SYS_MOUNT_SETATTR, -100, b"/", AT_RECURSIVE, ctypes.byref(attr),
                             ctypes.sizeof(attr))), "mount_setattr(/, read-only)")
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={max(disk_bytes, 4096)},mode=0700,nr_inodes=16384")
    writable = ["/tmp"]
    for target in ("/dev/shm", "/var/tmp"):
        if os.path.isdir(target):
            inside = "/tmp/." + target.strip("/").replace("/", "-")
            os.mkdir(inside, 0o700)
            _mount(inside, target, None, MS_BIND | MS_REC)
            writable.append(target)
    try:  # this PID namespace's own /proc (refused where /proc has masked parts: fine)
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass
    return writable


def _drop_capabilities() -> None:
    header = _CapHeader(version=0x20080522, pid=0)
    data = (_CapData * 2)()
    _check(int(_LIBC.capset(ctypes.byref(header), data)), "capset")


def _set_limits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        kind = getattr(resource, f"RLIMIT_{name.upper()}")
        resource.setrlimit(kind, (value, value))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _run_code(job: dict[str, Any], result_fd: int) -> int:
    scope: dict[str, Any] = {"__name__": "__main__", "INPUT": job.get("input"), "RESULT": None}
    exit_code = 0
    try:
        exec(compile(job["code"], "<subtask>", "exec"), scope)  # running it is the purpose
    except SystemExit as exc:
        exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - report any error of the user's code
        traceback.print_exc()
        exit_code = 1
    try:
        payload = json.dumps({"result": scope.get("RESULT")})
    except (TypeError, ValueError) as exc:
        payload = json.dumps({"result": None, "result_error": f"RESULT is not JSON: {exc}"})
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        _write_all(result_fd, payload.encode())
    except OSError:
        pass
    return exit_code


def _payload(config: dict[str, Any], job: dict[str, Any], keeper: int) -> int:
    _die_with(0 if config["namespaces"] else keeper)  # the keeper is outside its PID ns
    os.setsid()  # its own group: kill(0, ...) cannot reach the keeper's group
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    writable = [config["workdir"]]
    if config["namespaces"]:
        writable = _private_filesystem(int(config["disk_bytes"]))
    os.chdir(writable[0])
    if config["landlock"]:
        restrict([p for p in config["read_paths"] if p], writable + ["/dev/null"],
                 allow_network=bool(config["allow_network"]), abi=int(config["landlock"]))
    if config["namespaces"]:
        _drop_capabilities()
    # no exec regains a capability (uid 0 of a user namespace would get them all back
    # and could make / writable again); seccomp requires it too
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    confine(allow_network=bool(config["allow_network"]), ipc_namespace=config["namespaces"])
    _set_limits(config["limits"])
    sys.path[:] = [p for p in sys.path if p and p not in config["hidden_paths"]]
    return _run_code(job, int(config["result_fd"]))


def _children(pid: int | str = "self") -> list[int]:
    pids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return pids


def _tree(roots: list[int]) -> list[int]:
    """``roots`` and every process below them (this file runs alone, on the standard
    library: it cannot import the worker's copy in ``sandbox_procs``)."""
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += _children(pid)
    return list(seen)


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_leftovers() -> None:
    """Kill and reap every process still below this one (orphans come here: subreaper).

    Each round freezes the whole tree below (SIGSTOP: a fork bomb can no longer fork),
    takes it again for what was forked meanwhile, kills it and reaps; killing direct
    children alone hands their children up to carry on, which a bomb of processes that
    fork and exit can outrun. Rounds go on until nothing is left below.
    """
    while True:
        children = _children()
        if children:
            frozen = _tree(children)
            _signal_all(frozen, signal.SIGSTOP)
            tree = _tree(children)
            _signal_all(tree, signal.SIGKILL)
            # a pid that left the tree before its SIGSTOP may be another process's by now
            _signal_all(sorted(set(frozen) - set(tree)), signal.SIGCONT)
        try:
            pid, _status = os.waitpid(-1, 0 if children else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0 and not children:
            return  # children this kernel does not list (no CONFIG_PROC_CHILDREN)


def _keeper(config: dict[str, Any]) -> int:
    """Start the payload, wait for it, clean up after it; return its wait status."""
    job = json.loads(sys.stdin.buffer.read() or b"{}")
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    # SIGTERM, not SIGKILL: the keeper's handler stops the payload and everything below
    # it is then killed and reaped before the keeper exits (so nothing outlives the worker)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    _die_with(int(config["parent_pid"]), signal.SIGTERM)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    if config["namespaces"]:
        _enter_namespaces(bool(config["allow_network"]))
    _prctl(PR_SET_DUMPABLE, 0)  # the same uid cannot ptrace or read the keeper
    keeper = os.getpid()
    payload = os.fork()
    if payload == 0:
        code = EXIT_SETUP_FAILED
        try:
            code = _payload(config, job, keeper)
        except BaseException:  # noqa: BLE001 - a setup failure is reported, never raised
            traceback.print_exc()
        os._exit(code)
    os.close(int(config["result_fd"]))

    def stop(_signum: int, _frame: object) -> None:
        os.kill(payload, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    if os.getppid() != int(config["parent_pid"]):  # the worker went before the handler
        stop(signal.SIGTERM, None)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == payload:
            break
    _kill_leftovers()
    return status


def main() -> None:
    """Entry point of the keeper: exit as the payload did (same code or same signal)."""
    status = _keeper(json.loads(sys.argv[1]))
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else EXIT_SETUP_FAILED)


if __name__ == "__main__":
    main()

