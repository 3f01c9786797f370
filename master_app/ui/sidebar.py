"""The sidebar: how this master is configured (never a secret itself)."""

from __future__ import annotations

import streamlit as st

from database.models import WorkerStatus
from database.store import StoreError
from master_app.ui.resources import get_settings, get_store


def sidebar_ui() -> None:
    """Registry backend, planner, token set or not, and how many workers are live."""
    settings = get_settings()
    with st.sidebar:
        st.markdown("### NEXUS Grid")
        try:
            store = get_store()
            workers = store.list_workers()
        except StoreError as exc:
            st.error(f"Registry unavailable: {exc}")
            return
        live = sum(1 for w in workers if w.status in (WorkerStatus.ACTIVE, WorkerStatus.BUSY))
        st.markdown(f"**Registry:** `{store.backend_name}`")
        st.markdown(
            "**Planner:** Gemini (`" + settings.gemini_model + "`)"
            if settings.gemini_api_key
            else "**Planner:** local (no `GEMINI_API_KEY`)"
        )
        st.markdown("**Auth token:** " + ("set" if settings.auth_token else "**not set**"))
        st.markdown(f"**Workers:** {live} live of {len(workers)}")
