"""The master CLI's exit codes and one-line errors (in-process, through ``main``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from database.backends.sqlite import SqliteStore
from master_app.cli import main
from master_app.planning import LocalPlanner
from master_app.service import GridService
from tests.master.conftest import fast_settings


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ("DATABASE_URL", "SUPABASE_URL", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    path = tmp_path / "registry.db"
    monkeypatch.setenv("NADG_REGISTRY", str(path))
    return path


def test_resume_with_nothing_and_with_no_workers(
        registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resume", "--no-progress"]) == 0
    assert capsys.readouterr().out == "nothing to resume\n"
    store = SqliteStore(registry)
    try:
        GridService(store, fast_settings()).submit(
            "noop 2", LocalPlanner().plan("noop 2", None, []), None)
    finally:
        store.close()
    assert main(["resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 1 unfinished task(s) but no live worker")
    assert len(err.splitlines()) == 1


def test_an_unexpected_error_is_one_line_and_exit_1(
        registry: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the planner fell over")

    monkeypatch.setattr(GridService, "plan", broken)
    assert main(["run", "noop 2"]) == 1
    err = capsys.readouterr().err
    assert err == ("error: unexpected RuntimeError: the planner fell over "
                   "(run with -v for details)\n")


def test_help_and_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("run", "resume", "train"))
    assert main(["fly"]) == 2
    assert capsys.readouterr().err.startswith("error: No such command 'fly'")


def test_a_short_grid_secret_is_refused_without_echoing_it(
        registry: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NADG_AUTH_TOKEN", "hunter2-short")
    assert main(["run", "noop 2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "at least 32 bytes" in err and "secrets.token_urlsafe(32)" in err
    assert "hunter2-short" not in err
    assert len(err.splitlines()) == 1
    assert not registry.exists(), "nothing is opened or written before the settings are good"
