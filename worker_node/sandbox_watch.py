"""Watching one sandboxed run from the worker: draining its output with a cap, waiting for
its end (woken through a pidfd), its deadline, a cancel or its disk budget, and stopping it
(the keeper first, then its whole process group)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from typing import IO

_CHUNK = 64 * 1024
#: How long a keeper gets to clean up after SIGTERM before its group is SIGKILLed.
STOP_GRACE_S = 1.0
#: How often the size of a run folder is checked (levels without a private tmpfs).
DISK_POLL_S = 0.1


class CappedReader(threading.Thread):
    """Drains a pipe, keeping at most ``cap`` bytes (``truncated`` says when it cut)."""

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
        """What was kept, as text."""
        return self.kept.decode("utf-8", errors="replace")


def folder_bytes(path: str) -> int:
    """Bytes on disk under ``path`` (what a run wrote; unreadable entries count 0)."""
    total = 0
    with contextlib.suppress(OSError):
        for root, _dirs, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def _exited(pidfd: int | None, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``proc`` to exit (woken at once through its pidfd)."""
    if pidfd is None:
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000) + 1)))


def wait_for_run(proc: subprocess.Popen[bytes], deadline: float, cancel: threading.Event | None,
          workdir: str | None, disk_bytes: int) -> str | None:
    """Wait for ``proc``; the reason it was cut short (``timeout``, ``cancel``, ``disk``)
    or None when it ended by itself."""
    pidfd = None
    with contextlib.suppress(OSError, AttributeError):
        pidfd = os.pidfd_open(proc.pid)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            step = remaining if cancel is None and workdir is None else \
                min(remaining, DISK_POLL_S)
            if _exited(pidfd, proc, step):
                return None
            if cancel is not None and cancel.is_set():
                return "cancel"
            if workdir is not None and folder_bytes(workdir) > disk_bytes:
                return "disk"
    finally:
        if pidfd is not None:
            os.close(pidfd)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Ask the keeper to kill its run (it cleans up below itself), then kill its group."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_GRACE_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def write_job(proc: subprocess.Popen[bytes], job: bytes) -> None:
    """Send the job on the keeper's stdin and close it (a keeper that died is no error)."""
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.write(job)
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.close()
