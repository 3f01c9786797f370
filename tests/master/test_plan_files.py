"""Plans as files: ``run --save-plan FILE`` then ``run --plan FILE`` (no planner call)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from database.backends.sqlite import SqliteStore
from master_app.cli import main
from master_app.intake import load_dataset
from master_app.planning import LocalPlanner
from master_app.service import (
    GridService,
    PlanError,
    PlanFileError,
    SavedPlan,
    load_plan,
    save_plan,
)
from master_app.service.plans import MAX_PLAN_BYTES, parse_plan_file
from tests.master.conftest import fast_settings
from tests.support.servers import REPO_ROOT

COMMAND = "run python over range(5): RESULT = INPUT ** 2 + 1"
TICKETS = REPO_ROOT / "examples" / "tickets.csv"


def test_a_saved_plan_loads_back_equal(tmp_path: Path) -> None:
    data = load_dataset(TICKETS)
    plan = LocalPlanner().plan("classify as billing / bug / feature", data.summary(), [])
    saved = SavedPlan(command="classify as billing / bug / feature", plan=plan,
                      planner="local planner", data={"filename": "tickets.csv"})
    path = save_plan(tmp_path / "deep" / "plan.json", saved)
    again = load_plan(path)
    assert again == saved
    body = json.loads(path.read_text())
    assert body["format"] == "nexus-grid-plan" and body["version"] == 1
    assert "I was charged twice" not in path.read_text(), "a plan never carries the data"
    assert [p.name for p in path.parent.iterdir()] == ["plan.json"], "no temp file left"


@pytest.mark.parametrize(("text", "says"), [
    ("{not json", "is not JSON"),
    ('{"plan": {}}', "not a NEXUS Grid plan file"),
    ('{"format": "nexus-grid-plan", "version": 7, "command": "x", "plan": {}}',
     "version 7"),
    ('{"format": "nexus-grid-plan", "version": 1, "plan": {"operation": "noop"}}',
     'no "command"'),
    ('{"format": "nexus-grid-plan", "version": 1, "command": "x", "plan": '
     '{"operation": "teleport"}}', "the plan is not valid"),
    ('{"format": "nexus-grid-plan", "version": 1, "command": "x", "plan": '
     '{"operation": "noop", "rm -rf": true}}', "the plan is not valid"),
])
def test_a_bad_plan_file_is_a_clear_error(text: str, says: str) -> None:
    with pytest.raises(PlanFileError, match=says):
        parse_plan_file(text, "p.json")


def test_missing_big_and_mismatched_plan_files(tmp_path: Path, store: SqliteStore) -> None:
    with pytest.raises(PlanFileError, match="no such plan file"):
        load_plan(tmp_path / "nope.json")
    with pytest.raises(PlanFileError, match="is a directory"):
        load_plan(tmp_path)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_PLAN_BYTES + 1))
    with pytest.raises(PlanFileError, match="too big"):
        load_plan(big)
    service = GridService(store, fast_settings())
    saved = SavedPlan(command="embed", plan=LocalPlanner().plan(
        "embed", load_dataset(TICKETS).summary(), []))
    with pytest.raises(PlanFileError, match="made for 'embed', not 'sentiment'"):
        service.planned(saved, load_dataset(TICKETS), "sentiment")
    with pytest.raises(PlanError, match="give a data file"):
        service.planned(saved, None)  # an embed plan checked again: it needs the rows


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ("DATABASE_URL", "SUPABASE_URL", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NADG_REGISTRY", str(tmp_path / "registry.db"))
    return tmp_path


def test_run_plan_of_a_saved_plan_gives_the_same_result(
        env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    plan_file = env / "squares.json"
    only = env / "only.json"
    assert main(["run", COMMAND, "--save-plan", str(only), "--plan-only"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "\ntask " not in err and f"saved the plan to {only}" in err
    assert load_plan(only).command == COMMAND

    assert main(["run", COMMAND, "--local", "1", "--json", "--no-progress",
                 "--save-plan", str(plan_file)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert load_plan(plan_file).plan == load_plan(only).plan

    # A Gemini key pointing nowhere: planning would fail, so the run proves no planner call.
    monkeypatch.setenv("GEMINI_API_KEY", "not-a-key")
    monkeypatch.setenv("NADG_GEMINI_BASE_URL", "http://127.0.0.1:9")
    assert main(["run", "--plan", str(plan_file), "--local", "1", "--json",
                 "--no-progress"]) == 0
    out, err = capsys.readouterr()
    second = json.loads(out)
    assert "plan (saved plan (local planner" in err
    assert first["status"] == second["status"] == "completed"
    assert [r["output"] for r in second["table"]] == [i * i + 1 for i in range(5)]
    assert second["table"] == first["table"] and second["task_id"] != first["task_id"]


def test_plan_file_mistakes_are_one_line_and_exit_2(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--plan", str(env / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: no such plan file: {env / 'missing.json'}; check the path.\n"
    bad = env / "bad.json"
    bad.write_text('{"format": "nexus-grid-plan", "version": 1, "command": "x", '
                   '"plan": {"operation": "classify"}}')
    assert main(["run", "--plan", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "labels" in err and len(err.splitlines()) == 1
    assert main(["run", "noop 2", "--plan-only"]) == 2
    assert "--plan-only needs --save-plan" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert "or a saved plan with --plan FILE" in capsys.readouterr().err
    assert main(["run", "noop 2", "--local", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--local" in err and len(err.splitlines()) == 1


def test_the_ui_downloads_and_uploads_the_same_plan_file(store: SqliteStore) -> None:
    from master_app.ui import jobs_api

    data = load_dataset(TICKETS)
    plan = LocalPlanner().plan("classify as billing / bug / feature", data.summary(), [])
    text = jobs_api.plan_download("classify as billing / bug / feature", plan, data, "local")
    planned = jobs_api.plan_upload(text.encode(), "plan.json", data, store, fast_settings())
    assert planned.plan == plan and planned.command == "classify as billing / bug / feature"
    assert planned.planner == "saved"
    with pytest.raises(PlanError, match="not JSON"):
        jobs_api.plan_upload(b"\xff\xfe", "x.json", data, store, fast_settings())
    with pytest.raises(PlanError, match="give a data file"):
        jobs_api.plan_upload(text.encode(), "plan.json", None, store, fast_settings())
