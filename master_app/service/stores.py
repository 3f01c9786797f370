"""The store a headless run uses: the configured registry, or a throwaway local grid."""

from __future__ import annotations

import logging
import secrets
import signal
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

from database.store import Store
from master_app.local_grid import LocalGrid, claim_throwaway
from master_app.settings import MasterSettings

logger = logging.getLogger(__name__)


def open_configured_store() -> Store:
    """The registry and job store the environment configures (``database.open_store``)."""
    from database.config import open_store  # the backend import waits until first use

    return open_store()


def store_for_run(local: int, settings: MasterSettings, stack: ExitStack, *,
                  prefix: str = "nadg-local-") -> Store:
    """The store a run uses: the configured registry, or with ``local`` > 0 a throwaway
    SQLite registry holding only ``local`` workers started here (all closed by ``stack``).

    For a local grid, ``settings.auth_token`` is set to a random token unless one is set.
    Ctrl-C while the workers start stops them cleanly (:class:`GridCancelled`).
    """
    if not local:
        store = open_configured_store()
        stack.callback(store.close)
        return store
    from database.backends.sqlite import SqliteStore

    settings.auth_token = settings.auth_token or secrets.token_urlsafe(24)
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix))
    claim_throwaway(Path(tmp), prefix)  # and remove those of killed runs
    throwaway: Store = SqliteStore(Path(tmp) / "registry.db")
    stack.callback(throwaway.close)
    logger.info("starting %d local worker(s)", local)
    cancel = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    # While workers start, Ctrl-C sets ``cancel`` instead of raising KeyboardInterrupt,
    # which could land inside Popen and leave a worker running (GridCancelled instead).
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set()) if in_main else None
    try:
        stack.enter_context(LocalGrid(local, throwaway, settings.auth_token, cancel=cancel))
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    return throwaway
