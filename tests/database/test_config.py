"""A half-set Supabase configuration is an error naming the missing variable, never a
fallback to Postgres or to a local SQLite registry nobody else reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from database import StoreConfigError, StoreSettings, StoreUnavailable, open_store

STORE_VARS = ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "SUPABASE_KEY", "DATABASE_URL",
              "NADG_REGISTRY")
URL = "https://nadgproject.supabase.co"
KEY = "sb-service-role-key-never-shown"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in STORE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env file; a fallback would create .nadg here
    return monkeypatch


@pytest.mark.parametrize(("present", "missing"), [
    ({"SUPABASE_URL": URL}, "SUPABASE_SERVICE_KEY"),
    ({"SUPABASE_SERVICE_KEY": KEY}, "SUPABASE_URL"),
    ({"SUPABASE_KEY": KEY}, "SUPABASE_URL"),  # the older name of the key
    ({"SUPABASE_URL": URL, "DATABASE_URL": "postgresql://u:pw@db:5432/x"},
     "SUPABASE_SERVICE_KEY"),  # not a fallback to Postgres either
    ({"SUPABASE_URL": URL, "SUPABASE_SERVICE_KEY": "  "}, "SUPABASE_SERVICE_KEY"),
    ({"SUPABASE_URL": "", "SUPABASE_SERVICE_KEY": KEY}, "SUPABASE_URL"),
])
def test_half_set_supabase_names_the_missing_variable(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, present: dict[str, str], missing: str
) -> None:
    for name, value in present.items():
        clean_env.setenv(name, value)
    with pytest.raises(StoreConfigError) as info:
        open_store()
    message = str(info.value)
    assert f"but {missing} is not" in message and "unset" in message
    assert KEY not in message and "pw" not in message and "\n" not in message
    assert isinstance(info.value, StoreUnavailable)  # callers' existing handlers catch it
    assert not (tmp_path / ".nadg").exists()  # nothing was written anywhere
    with pytest.raises(StoreConfigError):
        StoreSettings().backend  # noqa: B018 - deciding the backend is the error
    with pytest.raises(StoreConfigError):
        StoreSettings().describe()


def test_complete_or_absent_pairs_choose_a_backend(clean_env: pytest.MonkeyPatch) -> None:
    assert StoreSettings().backend == "sqlite"
    clean_env.setenv("SUPABASE_URL", "")
    clean_env.setenv("SUPABASE_SERVICE_KEY", "")
    assert StoreSettings().backend == "sqlite"  # both blank: neither is set
    clean_env.setenv("SUPABASE_URL", " ")
    clean_env.setenv("SUPABASE_SERVICE_KEY", " ")
    assert StoreSettings().backend == "sqlite"
    clean_env.setenv("SUPABASE_URL", URL)
    clean_env.setenv("SUPABASE_SERVICE_KEY", KEY)
    assert StoreSettings().backend == "supabase"
    assert StoreSettings(SUPABASE_URL=URL, SUPABASE_SERVICE_KEY=KEY).backend == "supabase"


@pytest.mark.parametrize("command", [
    ["-m", "database.manage_workers", "add", "http://127.0.0.1:9/"],
    ["-m", "scripts.heartbeat"],
    ["-m", "master_app", "resume", "--no-progress"],
])
def test_entry_points_refuse_a_half_set_configuration(tmp_path: Path, command: list[str]) -> None:
    # the original NADG's failure: `manage_workers add` exited 0 writing to .nadg/, and the
    # heartbeat cron stayed green pinging an empty local registry
    env = {k: v for k, v in os.environ.items() if k not in STORE_VARS}
    env.update(SUPABASE_URL=URL)
    done = subprocess.run([sys.executable, *command], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)  # bad input, in every CLI
    assert "SUPABASE_SERVICE_KEY" in done.stderr
    assert not (tmp_path / ".nadg").exists()
