"""Isolation levels of the python sandbox: what each one contains, and which to use.

From strongest to weakest (``NADG_SANDBOX_LEVEL`` caps it; ``auto`` = the strongest that
works here, found by running a trivial job under each in turn):

``namespaces``
    new user, PID, mount, IPC and network namespaces: nothing the run starts outlives it,
    it sees and can signal only its own processes, the file system is read-only but for a
    private tmpfs of ``NADG_SANDBOX_DISK_MB`` (its /tmp, /dev/shm and /var/tmp: one size
    bound), no network unless ``NADG_SANDBOX_NETWORK=1``; plus Landlock when the kernel
    has it (reads limited to system and Python paths, signals scoped).
``landlock``
    no namespaces (a container's seccomp often forbids them), Landlock instead: writes only
    to the run's folder (its size polled and bounded), reads only system and Python paths,
    TCP off (ABI 4+), no signals out (ABI 6+); a keeper process kills what the run leaves.
``uid``
    a root worker without either: a uid of its own per run, all its processes killed and
    its files in /tmp, /var/tmp, /dev/shm removed after the run; file permissions only.
``process``
    a non-root worker without either: rlimits and the keeper only. The run has the worker's
    uid: it can signal the worker and write what the worker can. Refused unless
    ``NADG_SANDBOX_ALLOW_WEAK=1``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

from worker_node.sandbox_seccomp import SYSCALLS as SECCOMP_MACHINES

LEVELS = ("namespaces", "landlock", "uid", "process")


class SandboxRefused(RuntimeError):
    """No acceptable isolation level: the worker must not start."""


@dataclass(frozen=True, slots=True)
class Isolation:
    """One way of isolating runs; what ``/status`` reports under ``sandbox``."""

    level: str
    namespaces: bool
    landlock_abi: int  # 0 = Landlock not used
    run_uids: bool  # a per-run uid from the pool (root workers)
    allow_network: bool = False

    @property
    def signals_contained(self) -> bool:
        """The run cannot signal the worker or other runs."""
        return self.namespaces or self.run_uids or self.landlock_abi >= 6

    @property
    def writes_contained(self) -> bool:
        """The run writes only its own area (uid level: world-writable folders, cleaned)."""
        return self.namespaces or self.landlock_abi >= 1 or self.run_uids

    @property
    def weak(self) -> bool:
        """Needs ``NADG_SANDBOX_ALLOW_WEAK=1``: the run can reach the worker."""
        return not (self.signals_contained and self.writes_contained)

    def report(self) -> dict[str, Any]:
        """What each level contains, in words (``/status`` → ``sandbox``)."""
        return {
            "level": self.level, "weak": self.weak, "landlock_abi": self.landlock_abi,
            "processes": self._processes(), "signals": self._signals(),
            "filesystem": self._filesystem(), "network": self._network(),
        }

    def _processes(self) -> str:
        if self.namespaces:
            return "PID namespace: nothing the run starts outlives it"
        if self.run_uids:
            return "per-run uid: every process of that uid is killed after the run"
        return "keeper (subreaper) kills what the run leaves; the run can kill the keeper"

    def _signals(self) -> str:
        if self.namespaces:
            return "PID namespace: only its own processes are visible"
        if self.run_uids:
            return "separate uid: cannot signal the worker or other runs"
        if self.landlock_abi >= 6:
            return "Landlock scope: no signals out of the sandbox"
        return "NOT contained: the run has the worker's uid and can signal it"

    def _filesystem(self) -> str:
        reads = "; reads limited to system and Python paths (Landlock)" \
            if self.landlock_abi else "; reads what its uid can read"
        if self.namespaces:
            return "read-only but a private size-bounded tmpfs (/tmp, /dev/shm, /var/tmp)" \
                + reads
        if self.landlock_abi:
            return "writes only its run folder (size polled and bounded)" + reads
        if self.run_uids:
            return ("file permissions: writes only world-writable folders (its files "
                    "removed after the run)" + reads)
        return "NOT contained: writes and reads what the worker's user can"

    def _network(self) -> str:
        filtered = platform.machine() in SECCOMP_MACHINES
        unix = "; no Unix sockets (seccomp)" if filtered else \
            "; Unix sockets by path are NOT restricted (no seccomp filter for this CPU)"
        if self.allow_network:
            return "on (NADG_SANDBOX_NETWORK=1)" + unix
        if self.namespaces:
            return "off: network namespace with no interface" + unix
        if filtered:
            return "off: seccomp refuses every socket but netlink"
        if self.landlock_abi >= 4:
            return "TCP off (Landlock); UDP and unix sockets are not restricted"
        return "NOT restricted: no network namespace, seccomp filter or Landlock ABI 4 here"


def candidates(requested: str, *, root: bool, landlock_abi: int,
               allow_network: bool) -> list[Isolation]:
    """Levels to try, strongest first, from ``requested`` (``auto`` or a level) down."""
    if requested != "auto" and requested not in LEVELS:
        raise SandboxRefused(f"NADG_SANDBOX_LEVEL={requested!r} is not a level: use auto or "
                             f"one of {', '.join(LEVELS)}")
    start = 0 if requested == "auto" else LEVELS.index(requested)
    found = []
    for level in LEVELS[start:]:
        if level == "namespaces":
            found.append(Isolation(level, True, landlock_abi, root, allow_network))
        elif level == "landlock" and landlock_abi >= 1:
            found.append(Isolation(level, False, landlock_abi, root, allow_network))
        elif level == "uid" and root:
            found.append(Isolation(level, False, 0, True, allow_network))
        elif level == "process" and not root:
            found.append(Isolation(level, False, 0, False, allow_network))
    return found


def refusal(isolation: Isolation) -> str:
    """The message of a worker that refuses a weak level without the operator's opt-in."""
    return (f"the python sandbox would run at level {isolation.level!r}, which does not "
            f"contain the run ({isolation.report()['signals']}; "
            f"{isolation.report()['filesystem']}). Allow user namespaces or run on a kernel "
            "with Landlock (5.13+, ABI 6+ for signals), or run the worker as root (per-run "
            "uids), or accept the risk with NADG_SANDBOX_ALLOW_WEAK=1")
