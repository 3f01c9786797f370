"""The Streamlit master: ``streamlit run master_app/app.py``. Thin: navigation only."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import streamlit as st

# `streamlit run master_app/app.py` puts master_app/ on sys.path, not the repository root.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from master_app.ui.history_page import history_page  # noqa: E402
from master_app.ui.run_page import run_page  # noqa: E402
from master_app.ui.sidebar import sidebar_ui  # noqa: E402
from master_app.ui.training import training_page  # noqa: E402
from master_app.ui.workers_page import workers_page  # noqa: E402

logger = logging.getLogger(__name__)


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
    st.set_page_config(page_title="NEXUS Grid", page_icon=":material/hub:", layout="wide")
    pages = [
        st.Page(guarded(run_page), title="Run a task", icon=":material/play_arrow:", url_path="run",
                default=True),
        st.Page(guarded(workers_page), title="Workers", icon=":material/dns:", url_path="workers"),
        st.Page(guarded(history_page), title="History", icon=":material/history:",
                url_path="history"),
        st.Page(guarded(training_page), title="Training", icon=":material/model_training:",
                url_path="training"),
    ]
    nav = st.navigation(pages)
    sidebar_ui()
    nav.run()


if __name__ == "__main__":
    main()
