"""The sidebar: how this master is configured (never a secret itself)."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from database.store import StoreError
from master_app.service import count_live
from master_app.ui.auth import auth_sidebar_ui
from master_app.ui.resources import get_settings, get_store


def sidebar_ui() -> Callable[[], None]:
    """Who is signed in (or the no-login notice), registry backend, planner, token set or
    not; returns the function that writes how many workers are live.

    Call that function after the page has run (``app.py`` does): a page's own action
    (Drain, Remove, Add) then shows in the count at once, not one action later.
    """
    settings = get_settings()
    with st.sidebar:
        st.markdown("### NEXUS Grid")
        auth_sidebar_ui()
        try:
            store = get_store()
        except StoreError as exc:
            st.error(f"Registry unavailable: {exc}")
            return lambda: None
        st.markdown(f"**Registry:** `{store.backend_name}`")
        st.markdown(
            "**Planner:** Gemini (`" + settings.gemini_model + "`)"
            if settings.gemini_api_key
            else "**Planner:** local (no `GEMINI_API_KEY`)"
        )
        st.markdown("**Auth token:** " + ("set" if settings.auth_token else "**not set**"))
        slot = st.empty()

    def workers_count() -> None:
        try:
            workers = store.list_workers()
        except StoreError as exc:
            slot.error(f"Registry unavailable: {exc}")
            return
        slot.markdown(f"**Workers:** {count_live(workers)} live of {len(workers)}")

    return workers_count
