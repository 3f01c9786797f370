"""One definition of a live worker, and every front-end plans and runs over live workers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from database.backends.sqlite import SqliteStore
from database.models import WorkerNode, WorkerStatus
from master_app.intake import DataSummary
from master_app.planning import LocalPlanner
from master_app.planning.plan import Plan
from master_app.service import LIVE_STATUSES, GridService, is_live, live_workers
from master_app.service import grid as grid_module
from master_app.service.training import trainable_workers
from master_app.ui import jobs_api
from tests.master.conftest import fast_settings
from tests.support.servers import REPO_ROOT


def _registry(store: SqliteStore) -> dict[str, WorkerNode]:
    """One worker in every status, plus a live one that cannot train."""
    made = {}
    for status in WorkerStatus:
        w = store.add_worker(f"http://127.0.0.1:1/{status.value}", name=status.value)
        made[status.value] = store.set_worker_status(w.id, status)
    made["no-train"] = store.register_worker("http://127.0.0.1:1/no-train", name="no-train",
                                             capabilities=["embed"])
    return made


def test_live_means_active_or_busy(store: SqliteStore) -> None:
    made = _registry(store)
    assert set(LIVE_STATUSES) == {WorkerStatus.ACTIVE, WorkerStatus.BUSY}
    assert {w.name for w in live_workers(store)} == {"active", "busy", "no-train"}
    assert [is_live(made[s.value]) for s in WorkerStatus] == [
        s in (WorkerStatus.ACTIVE, WorkerStatus.BUSY) for s in WorkerStatus]
    assert {w.name for w in live_workers(store, "embed")} == {"active", "busy", "no-train"}
    assert {w.name for w in trainable_workers(store)} == {"active", "busy"}, \
        "a worker that says what it runs, and not train, gets no training"


class RecordingPlanner:
    """A planner that remembers which workers it was shown."""

    name = "recording"

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def plan(self, command: str, summary: DataSummary | None,
             workers: Sequence[WorkerNode]) -> Plan:
        self.seen = [w.name for w in workers]
        return LocalPlanner().plan(command, summary, workers)


def test_the_ui_and_the_cli_plan_over_the_same_live_workers(
        store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    _registry(store)
    planner = RecordingPlanner()
    monkeypatch.setattr(grid_module, "choose_planner", lambda settings, requested: (
        planner, "recording planner"))
    settings = fast_settings()
    GridService(store, settings).plan("noop 2", None)  # what the CLI calls
    cli_saw = sorted(planner.seen, key=str)
    planned = jobs_api.plan_task("noop 2", None, None, store, settings)  # what the page calls
    assert planned.planner == "recording" and planned.reason == "recording planner"
    assert sorted(planner.seen, key=str) == cli_saw == ["active", "busy", "no-train"]


def test_live_is_defined_once() -> None:
    """Nobody spells out the live statuses again: ``database.models.LIVE_STATUSES`` (beside
    the status values, so the operator side can use it too) is the one definition."""
    pattern = re.compile(r"WorkerStatus\.(ACTIVE|BUSY)\s*,\s*WorkerStatus\.(ACTIVE|BUSY)"
                         r"|[\"'](active|busy)[\"']\s*,\s*[\"'](active|busy)[\"']\s*[)\]]")
    spelled = []
    for folder in ("master_app", "scripts", "nexus_ops", "database"):
        for path in Path(REPO_ROOT, folder).rglob("*.py"):
            if pattern.search(path.read_text(encoding="utf-8")):
                spelled.append(str(path.relative_to(REPO_ROOT)))
    assert spelled == ["database/models.py"]
