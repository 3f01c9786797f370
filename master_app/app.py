"""The Streamlit master: ``streamlit run master_app/app.py``. Thin: navigation only."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path

import streamlit as st

# `streamlit run master_app/app.py` finds master_app through the editable install
# (`pip install -e .`, done by the Makefile), not through a sys.path edit.
from master_app.ui.auth import require_login
from master_app.ui.history_page import history_page
from master_app.ui.run_page import run_page
from master_app.ui.sidebar import sidebar_ui
from master_app.ui.training import training_page
from master_app.ui.workers_page import workers_page

logger = logging.getLogger(__name__)

#: The logo and the browser tab's icon: files of this repository, so the app shows them
#: offline too (a ``:material/...:`` page icon is fetched from a font CDN).
ASSETS = Path(__file__).resolve().parent / "ui" / "assets"


def guarded(page: Callable[[], None]) -> Callable[[], None]:
    """A page that shows an unexpected error as a message (and logs it), not a traceback."""

    @functools.wraps(page)
    def run() -> None:
        try:
            page()
        except Exception as exc:  # Streamlit's rerun/stop signals are BaseException
            logger.exception("page %s failed", getattr(page, "__name__", page))
            st.error(f"This page hit an unexpected error: {type(exc).__name__}: {exc}. "
                     "The details are in the master's log; reload the page to try again.")

    return run


def main() -> None:
    """Set up the page, the sidebar and the navigation, then run the chosen page."""
    logging.basicConfig(level=os.environ.get("NADG_LOG_LEVEL", "INFO"))
    st.set_page_config(page_title="NEXUS Grid", page_icon=str(ASSETS / "icon.png"),
                       layout="wide")
    st.logo(str(ASSETS / "logo.svg"), size="large", icon_image=str(ASSETS / "icon.svg"))
    identity = require_login()  # shows only the login (or what to configure) until signed in
    if identity is None:
        return
    operate = identity.can_operate  # a viewer gets no Run or Training page
    pages = [
        *([st.Page(guarded(run_page), title="Run a task", icon=":material/play_arrow:",
                   url_path="run", default=True)] if operate else []),
        st.Page(guarded(workers_page), title="Workers", icon=":material/dns:", url_path="workers"),
        st.Page(guarded(history_page), title="History", icon=":material/history:",
                url_path="history"),
        *([st.Page(guarded(training_page), title="Training", icon=":material/model_training:",
                   url_path="training")] if operate else []),
    ]
    nav = st.navigation(pages)
    workers_count = sidebar_ui()
    try:
        nav.run()
    finally:
        workers_count()  # after the page: its own action (Drain, Add) shows at once


if __name__ == "__main__":
    main()
