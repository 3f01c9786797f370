"""Shared fixtures of the master tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from database.backends.sqlite import SqliteStore
from master_app.settings import MasterSettings
from tests.support.signing import GRID_SECRET


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "registry.db")
    yield s
    s.close()


def fast_settings(**overrides: object) -> MasterSettings:
    """Settings with test-sized timings."""
    base: dict[str, object] = dict(
        NADG_AUTH_TOKEN=GRID_SECRET, NADG_BACKOFF_BASE_S=0.01, NADG_BACKOFF_MAX_S=0.1,
        NADG_CIRCUIT_FAILURES=2, NADG_CIRCUIT_COOLDOWN_S=0.3, NADG_ALL_DOWN_GRACE_S=0.5,
        NADG_HEDGE_MIN_S=0.3, NADG_HEDGE_FACTOR=3.0, NADG_HEDGE_MIN_SAMPLES=3,
        NADG_SUBTASK_TIMEOUT_S=30.0, NADG_MAX_ATTEMPTS=4, GEMINI_API_KEY=None)
    base.update(overrides)
    return MasterSettings.model_validate(base)
