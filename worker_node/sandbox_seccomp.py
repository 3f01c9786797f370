"""Seccomp for the sandbox's payload: the system calls no namespace or Landlock rule covers.

Standard library only: the sandbox runner has this module pasted in (like
:mod:`worker_node.sandbox_landlock`) and calls :func:`confine` just before the user's code.

What it refuses (``EPERM``), on every isolation level:

* ``socket()`` of any family but netlink (and ``AF_INET``/``AF_INET6`` with the network
  opt-in): a Unix socket can reach host services by path (a PostgreSQL socket with trust
  or peer auth, a Docker socket), which neither a network namespace, a read-only mount nor
  Landlock stops; on levels without a network namespace or Landlock TCP rules this is
  also what turns the network off. ``socketpair()`` stays (asyncio, multiprocessing);
* ``io_uring_setup``: io_uring opens and connects sockets without the system calls above;
* where ``ipc_namespace`` is False (no IPC and user namespace): System V shared memory,
  semaphores and message queues, POSIX message queues and kernel keyrings, which outlive
  the run (a shared memory segment stays in RAM until someone removes it; a key in the
  user keyring of a pool uid is read by the next run that gets that uid);
* every system call of a foreign ABI (x32, i386), which would bypass the numbers above.

The process must have ``no_new_privs`` set first (the caller does).
"""

from __future__ import annotations

import ctypes
import platform

PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
RET_ALLOW, RET_EPERM = 0x7FFF0000, 0x00050000 | 1
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
X32_BIT = 0x40000000
_LD, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0 = 0, 4, 16  # struct seccomp_data (arg 0, low half)

#: machine -> audit arch, socket, io_uring_setup, then the calls that make objects outliving
#: the run (shmget, semget, msgget, mq_open, add_key, request_key, keyctl).
SYSCALLS = {
    "x86_64": (0xC000003E, 41, 425, (29, 64, 68, 240, 248, 249, 250)),
    "aarch64": (0xC00000B7, 198, 425, (194, 190, 186, 180, 217, 218, 219)),
}


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Filter))]


def program(machine: str, *, allow_network: bool,
            ipc_namespace: bool) -> list[tuple[int, int, int, int]] | None:
    """The BPF filter as ``(code, jt, jf, k)`` rows; None for an unknown architecture."""
    known = SYSCALLS.get(machine)
    if known is None:
        return None
    arch, socket_nr, uring_nr, ipc = known
    denied = [uring_nr, *([] if ipc_namespace else ipc)]
    families = [AF_NETLINK, *((AF_INET, AF_INET6) if allow_network else ())]
    # rows with symbolic targets: "deny", "allow" or "next"; resolved below
    rows: list[tuple[int, object, object, int]] = [
        (_LD, 0, 0, _OFFSET_ARCH), (_JEQ, "next", "deny", arch),
        (_LD, 0, 0, _OFFSET_NR), (_JGE, "deny", "next", X32_BIT),
        *((_JEQ, "deny", "next", nr) for nr in denied),
        (_JEQ, "next", "allow", socket_nr), (_LD, 0, 0, _OFFSET_ARG0),
        *((_JEQ, "allow", "next", family) for family in families),
        (_RET, 0, 0, RET_EPERM),
        (_RET, 0, 0, RET_ALLOW),  # "allow"
        (_RET, 0, 0, RET_EPERM),  # "deny"
    ]
    targets = {"allow": len(rows) - 2, "deny": len(rows) - 1}

    def offset(at: int, target: object) -> int:
        return 0 if target == "next" or not isinstance(target, str) \
            else targets[target] - at - 1

    return [(code, offset(i, jt), offset(i, jf), k) for i, (code, jt, jf, k) in enumerate(rows)]


def confine(*, allow_network: bool, ipc_namespace: bool) -> bool:
    """Install the filter on this process (and what it starts later), for good.

    Returns False on an architecture this module does not know (nothing installed);
    raises OSError when the kernel refuses the filter.
    """
    rows = program(platform.machine(), allow_network=allow_network,
                   ipc_namespace=ipc_namespace)
    if rows is None:
        return False
    filters = (_Filter * len(rows))(*(_Filter(*row) for row in rows))
    prog = _Program(len(rows), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, "seccomp: the kernel refused the sandbox's filter")
    return True
