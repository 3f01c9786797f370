"""Fixtures of the UI tests: an SQLite registry, real workers on loopback, headless Chromium.

Streamlit's ``st.cache_resource`` is process-wide, and AppTest runs the pages in this
process, so every test starts with the caches cleared and ``NADG_REGISTRY`` pointing at
the UI tests' registry (set for the tests/ui package only, restored after it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st

from database.config import StoreSettings, open_store
from database.store import Store
from tests.support.ui import _loopback_master  # noqa: F401 - autouse fixture

TOKEN = "ui-test-grid-secret-0123456789abcdef01"


@pytest.fixture(scope="package")
def registry_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One SQLite registry for the UI tests, exported as ``NADG_REGISTRY``."""
    path = tmp_path_factory.mktemp("ui") / "registry.db"
    saved = {k: os.environ.get(k) for k in ("NADG_REGISTRY", "NADG_AUTH_TOKEN",
                                             "GEMINI_API_KEY", "GOOGLE_API_KEY")}
    os.environ["NADG_REGISTRY"] = str(path)
    os.environ["NADG_AUTH_TOKEN"] = TOKEN
    os.environ.pop("GEMINI_API_KEY", None)
    os.environ.pop("GOOGLE_API_KEY", None)
    yield path
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="package")
def store(registry_path: Path) -> Iterator[Store]:
    """The tests' own handle on the registry (the app opens its own)."""
    s = open_store(StoreSettings(NADG_REGISTRY=registry_path))
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _fresh_streamlit_caches() -> Iterator[None]:
    """Each test sees freshly built resources (store, settings, runs)."""
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str | None:
    """Debian's chromium (``make browser`` installs it), else Google Chrome, if installed."""
    found = (shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
             or shutil.which("google-chrome"))
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium driven by Playwright: fails in CI without it, skips locally.

    Module scope: Playwright's sync API keeps an event loop running in this thread while
    it is open, and other tests call ``asyncio.run``.
    """
    exe = chromium_path()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: run `make browser` (apt-get install chromium)")
        pytest.skip("chromium is not installed (make browser); the browser test runs in CI")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="package")
def grid(store: Store) -> Iterator[object]:
    """Two real workers on loopback (subprocesses, as the container starts them)."""
    from master_app.local_grid import LocalGrid

    with LocalGrid(2, store, TOKEN, capacity=2, name_prefix="ui") as g:
        yield g
