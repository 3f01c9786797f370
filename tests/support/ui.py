"""Pytest fixtures shared by the suites that run Streamlit pages under AppTest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="package", autouse=True)
def _loopback_master() -> Iterator[None]:
    """The app under AppTest listens on 127.0.0.1, as `make up` starts it: no login needed
    (unset, Streamlit listens on every interface and the app would refuse to start)."""
    from streamlit import config

    saved = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    yield
    config.set_option("server.address", saved)
