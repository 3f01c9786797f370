"""Process hardening of the worker itself (Linux): keep sandboxed code out of its memory.

With ``PR_SET_DUMPABLE = 0`` the kernel makes ``/proc/<worker>/environ``, ``mem`` and
friends owned by root, so sandboxed code running as the worker's own user (uid 1000 on a
Space) cannot read the token from the worker's environment. Children reset the flag when
they exec, so it costs the sandbox nothing.

:func:`harden` is what the worker's lifespan calls once its settings are read: non-dumpable,
the secrets it no longer needs dropped from ``os.environ`` (so no child inherits them by
accident), and the python sandbox prepared (orphan reaper, predecessor's leftovers
cleaned, isolation level chosen and logged; a weak level without the operator's opt-in
raises :class:`HardeningRefused`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from typing import TYPE_CHECKING

from worker_node.sandbox_isolation import Isolation, SandboxRefused

if TYPE_CHECKING:
    from worker_node.settings import WorkerSettings

logger = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3

#: Secrets the worker has read into its settings (or never needs): removed from os.environ.
#: Registry credentials (DATABASE_URL, SUPABASE_*) stay: the registry reads them when it
#: connects. The sandbox never sees any of them (its environment is built from scratch).
DROPPED_SECRETS = ("NADG_AUTH_TOKEN", "NADG_AUTH_TOKEN_PREVIOUS", "NADG_WORKER_KEY",
                   "NADG_WORKER_KEY_PREVIOUS", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                   "NADG_UI_PASSWORD", "NADG_UI_PASSWORD_HASH")

HardeningRefused = SandboxRefused


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


def drop_secrets(names: tuple[str, ...] = DROPPED_SECRETS) -> list[str]:
    """Remove ``names`` from this process's environment; returns those that were set."""
    dropped = [name for name in names if name in os.environ]
    for name in dropped:
        del os.environ[name]
    return dropped


def harden(settings: WorkerSettings, from_environment: bool = True) -> Isolation:
    """Once the settings are read: non-dumpable, secrets dropped and orphans reaped (when
    ``settings`` came from the environment: this process is the worker, not a program
    that embeds the app), sandbox prepared."""
    from worker_node.sandbox import prepare

    make_undumpable()
    dropped = drop_secrets() if from_environment else []
    if dropped:
        logger.info("dropped %s from the environment", ", ".join(dropped))
    return prepare(settings.sandbox_level, allow_weak=settings.sandbox_allow_weak,
                   allow_network=settings.sandbox_network,
                   interpreter=settings.sandbox_python,
                   disk_bytes=settings.sandbox_disk_mb * 1024 * 1024,
                   own_process=from_environment)
