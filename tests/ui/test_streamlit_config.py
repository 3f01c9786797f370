"""The master's Streamlit settings that its behaviour depends on (``.streamlit/config.toml``,
read by ``streamlit run`` from the repository root, as ``make up`` starts it)."""

from __future__ import annotations

import tomllib
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"


def test_settings_the_master_relies_on() -> None:
    config = tomllib.loads(CONFIG.read_text())
    # a full gc.collect(2) after each fragment rerun (every second while a page watches a
    # run) held the run's GIL: most of what watching cost (scripts.bench_watching)
    assert config["runner"]["postScriptGC"] is False
    # master_app/watchdog.py would shadow the watchdog package Streamlit's watcher imports
    assert config["server"]["fileWatcherType"] == "none"
    # no Deploy / Rerun / Clear cache from Streamlit's own menu
    assert config["client"]["toolbarMode"] == "viewer"
