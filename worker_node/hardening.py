"""Process hardening of the worker itself (Linux): keep sandboxed code out of its memory.

With ``PR_SET_DUMPABLE = 0`` the kernel makes ``/proc/<worker>/environ``, ``mem`` and
friends owned by root, so sandboxed code running as the worker's own user (uid 1000 on a
Space) cannot read the token from the worker's environment. Children reset the flag when
they exec, so it costs the sandbox nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return int(libc.prctl(option, arg, 0, 0, 0))


def make_undumpable() -> bool:
    """Mark this process non-dumpable; True on success, False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ok = _prctl(PR_SET_DUMPABLE, 0) == 0
    except (OSError, AttributeError) as exc:
        logger.warning("could not mark the worker non-dumpable: %s", exc)
        return False
    if not ok:
        logger.warning("prctl(PR_SET_DUMPABLE, 0) failed; sandboxed code running as this "
                       "user may read /proc/%s/environ", "<worker pid>")
    return ok


def is_dumpable() -> bool:
    """Whether this process is dumpable (Linux only; True elsewhere)."""
    if not sys.platform.startswith("linux"):
        return True
    return _prctl(PR_GET_DUMPABLE) != 0
