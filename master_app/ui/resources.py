"""Process-wide resources of the Streamlit master, built once and shared by sessions.

Every getter here is an ``st.cache_resource``: the store (one connection pool), the
settings and the registry of background runs live as long as the Streamlit server (each
run owns its HTTP client, bound to its event loop), never rebuilt on a rerun and never
built at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import streamlit as st

from database.store import Store
from master_app.settings import MasterSettings
from master_app.ui.run_state import RunRegistry

logger = logging.getLogger(__name__)


def _get_settings() -> MasterSettings:
    """The master's settings, read from the environment once."""
    return MasterSettings()


def _get_store() -> Store:
    """The registry and job store chosen by the environment (see ``database.open_store``)."""
    from database import open_store  # the backend import is deferred until first use

    store: Store = open_store()
    logger.info("opened the %s store", store.backend_name)
    return store


def _get_runs() -> RunRegistry:
    """The background runs of this master, shared by every browser session."""
    return RunRegistry()


get_settings: Callable[[], MasterSettings] = st.cache_resource(show_spinner=False)(_get_settings)
get_store: Callable[[], Store] = st.cache_resource(show_spinner="Opening the registry...")(
    _get_store
)
get_runs: Callable[[], RunRegistry] = st.cache_resource(show_spinner=False)(_get_runs)
