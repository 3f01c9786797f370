"""Processes and files of sandbox runs: per-run uids, killing by uid, reaping orphans, and
cleaning up what a crashed predecessor left.

* A root worker runs each sandbox under a uid of its own from a pool (61000 + n), claimed
  with an ``flock`` held for the worker's lifetime, so two workers on one host never share
  one; a uid is cleaned (processes killed, files removed) when it is claimed and after
  every run.
* The worker is a child subreaper: an escaped orphan comes back to it, never to init, so
  :func:`sweep_orphans` can kill and reap it (no zombies pile up, with or without tini).
* :func:`clean_predecessors` removes the run folders and sandbox processes of a worker
  that died without cleaning up (kill -9, OOM).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

POOL_BASE = 61000
POOL_SIZE = 512
RUN_DIR_PREFIX = "nadg-py-"
#: The first key of every keeper's config (its last argument): how leftovers are found.
CONFIG_MARK = '{"nadg_sandbox": 1'
#: Folders every user may write (a run at the uid level too); /var/lock is mostly a link.
SHARED_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")
#: How deep :func:`remove_files_of_uid` follows world-writable folders of other users.
SHARED_DEPTH = 4
PR_SET_CHILD_SUBREAPER = 36

_spawn_lock = threading.Lock()
_live: set[int] = set()


_reaping: list[bool] = [False]


def set_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux) and let
    :func:`sweep_orphans` kill and reap them; True on success."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        ok = False
    _reaping[0] = ok
    return ok


@contextlib.contextmanager
def spawning() -> Iterator[set[int]]:
    """Hold while starting a keeper and adding its pid to the yielded set, so that
    :func:`sweep_orphans` never mistakes a keeper that is just starting for an orphan."""
    with _spawn_lock:
        yield _live


def finished(pid: int) -> None:
    """A keeper was waited for: it is no longer a live run."""
    with _spawn_lock:
        _live.discard(pid)


def status_fields(pid: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        pass
    return fields


def processes_of_uid(uid: int) -> list[int]:
    """Live (not zombie) processes whose real, effective or saved uid is ``uid``."""
    found = []
    wanted = str(uid)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as f:
                text = f.read(2048)
        except OSError:
            continue
        at = text.find(b"\nUid:")
        uids = text[at + 5:text.find(b"\n", at + 1)].split()[:3] if at >= 0 else []
        state = text[text.find(b"\nState:") + 7:][:3].strip()
        if wanted.encode() in uids and not state.startswith((b"Z", b"X")):
            found.append(int(entry))
    return found


def kill_uid(uid: int, rounds: int = 200) -> int:
    """SIGKILL every process of ``uid`` until none is left; returns how many were killed."""
    killed = 0
    for _ in range(rounds):
        pids = processes_of_uid(uid)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        sweep_orphans()
    return killed


def _children(pid: int | str = "self") -> list[int]:
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), \
                    open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                pids += [int(p) for p in f.read().split()]
    return pids


def _tree(roots: list[int]) -> list[int]:
    """``roots`` and every process below them."""
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += _children(pid)
    return list(seen)


def _own_ids() -> set[int]:
    """This process's pid and its threads' ids (``kill`` of a thread id signals it all)."""
    ids = {os.getpid()}
    with contextlib.suppress(OSError):
        ids.update(int(task) for task in os.listdir("/proc/self/task"))
    return ids


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    # A grandchild's pid is free once its own parent reaps it, and may be reused before
    # the signal: never by this process itself (a stopped worker would stay stopped).
    own = _own_ids()
    for pid in pids:
        if pid in own:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def sweep_orphans(rounds: int = 50) -> int:
    """Kill and reap this process's children that are orphans of sandbox runs, with every
    process below them.

    An orphan is a child in another session than this process that is not a live keeper
    (keepers start in their own session; whatever they leave behind is handed to this
    subreaper). Children in this process's own session (started by libraries) are left
    alone. Each round freezes an orphan's whole tree (SIGSTOP: a fork bomb can no longer
    fork), takes the tree again for what was forked meanwhile, kills it and reaps; rounds
    go on until no orphan is left, so a bomb whose processes fork and exit cannot outrun
    the sweep (killing children alone left its grandchildren to carry on). Does nothing
    unless :func:`set_subreaper` made this process the reaper (an app embedded in a test
    process must not kill that process's children). Returns how many were reaped.
    """
    if not _reaping[0]:
        return 0
    own_sid = os.getsid(0)
    reaped = 0
    with _spawn_lock:
        for _ in range(rounds):
            orphans = []
            for pid in _children():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if pid not in _live and os.getsid(pid) != own_sid:
                        orphans.append(pid)
            if not orphans:
                break
            frozen = _tree(orphans)
            _signal_all(frozen, signal.SIGSTOP)
            tree = _tree(orphans)
            _signal_all(tree, signal.SIGKILL)
            # a pid that left the tree between the walk and its SIGSTOP (reaped by its own
            # parent) may belong to another process by now: it must not stay frozen
            _signal_all(sorted(set(frozen) - set(tree)), signal.SIGCONT)
            for pid in orphans:  # our children, killed: their end is certain
                with contextlib.suppress(ChildProcessError, OSError):
                    if os.waitpid(pid, 0)[0] == pid:
                        reaped += 1
    return reaped


def remove_files_of_uid(uid: int, dirs: tuple[str, ...] = SHARED_TMP_DIRS) -> int:
    """Remove what ``uid`` left in the shared temporary folders: at their top, and inside
    the world-writable folders of other users there (``/tmp/.X11-unix``, say)."""
    seen = {os.path.realpath(folder) for folder in dirs}
    return sum(_remove_in(folder, uid, SHARED_DEPTH) for folder in sorted(seen))


def _remove_in(folder: str, uid: int, depth: int) -> int:
    removed = 0
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                is_dir = stat.S_ISDIR(info.st_mode)
                if info.st_uid != uid:
                    if is_dir and info.st_mode & stat.S_IWOTH and depth > 1:
                        removed += _remove_in(entry.path, uid, depth - 1)
                    continue
                if is_dir:
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed += 1
            except OSError:
                continue
    return removed


def _lock_root() -> Path:
    """One place per machine (not per $TMPDIR): every worker of the host must see the
    same locks, or two could hand out the same uid."""
    run = Path("/run")
    if os.access(run, os.W_OK):
        return run / "nadg-sandbox-uids"
    return Path("/tmp/nadg-sandbox-uids")


class UidPool:
    """Per-run uids for a root worker: claimed once with an flock, then reused."""

    def __init__(self, base: int = POOL_BASE, size: int = POOL_SIZE,
                 lock_dir: str | None = None) -> None:
        self.base, self.size = base, size
        self.lock_dir = Path(lock_dir or _lock_root())
        self._lock = threading.Lock()
        self._free: list[int] = []
        self._held: dict[int, int] = {}  # uid -> fd of its lock file

    def acquire(self) -> int:
        """A uid that no other run (of this or another worker) uses now."""
        with self._lock:
            if self._free:
                return self._free.pop()
            self.lock_dir.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.lock_dir, 0o700)
            for uid in range(self.base, self.base + self.size):
                if uid in self._held:
                    continue
                fd = os.open(self.lock_dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                self._held[uid] = fd
                self.clean(uid)  # whatever a dead predecessor left under this uid
                return uid
        raise RuntimeError(f"no free sandbox uid in {self.base}..{self.base + self.size - 1}")

    def release(self, uid: int) -> None:
        """Give ``uid`` back for the next run (after :meth:`clean`)."""
        with self._lock:
            self._free.append(uid)

    @staticmethod
    def clean(uid: int, files: bool = True) -> None:
        """Kill every process of ``uid`` and (``files``) remove its temporary files."""
        killed = kill_uid(uid)
        removed = remove_files_of_uid(uid) if files else 0
        if killed or removed:
            logger.info("sandbox uid %d: killed %d leftover processes, removed %d files",
                        uid, killed, removed)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_predecessors(tmp_dir: str | None = None) -> dict[str, int]:
    """Remove run folders and kill sandbox processes whose worker is gone.

    Run folders are named ``nadg-py-<worker pid>-...``; keepers carry their worker's pid in
    their config argument. Returns counts for the log.
    """
    tmp = Path(tmp_dir or tempfile.gettempdir())
    folders = 0
    for path in tmp.glob(f"{RUN_DIR_PREFIX}*"):
        owner = path.name[len(RUN_DIR_PREFIX):].split("-", 1)[0]
        if owner.isdigit() and _alive(int(owner)) and int(owner) != os.getpid():
            continue
        shutil.rmtree(path, ignore_errors=True)
        folders += 1
    processes = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        config = next((a for a in args if a.startswith(CONFIG_MARK.encode())), None)
        if config is None:
            continue
        try:
            parent = int(json.loads(config)["parent_pid"])
        except (ValueError, KeyError, TypeError):
            continue
        if parent != os.getpid() and _alive(parent):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(entry), signal.SIGKILL)
            processes += 1
    sweep_orphans()
    return {"folders": folders, "processes": processes}
