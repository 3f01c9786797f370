"""A plan the live workers cannot run is refused before anything is stored, with the reason."""

from __future__ import annotations

import pytest

from database.backends.sqlite import SqliteStore
from master_app.planning.plan import Plan
from master_app.planning.steps import GenerateStep, PythonStep, SynthesisReduce
from master_app.service import GridService
from master_app.service.errors import PlanNotRunnable
from tests.master.conftest import fast_settings


def _plan(*steps: PythonStep | GenerateStep, synthesis: bool = False) -> Plan:
    reduce = SynthesisReduce(instruction="merge them") if synthesis else None
    return Plan(subtasks=list(steps), reduce=reduce)


def test_a_kind_no_live_worker_runs_is_refused_before_anything_is_stored(
        store: SqliteStore) -> None:
    store.register_worker("http://127.0.0.1:1/a", name="python-only",
                          capabilities=["python", "noop"])
    service = GridService(store, fast_settings())
    service.create("fine", _plan(PythonStep(code="RESULT = 1")), None)
    tasks_before = len(store.list_tasks())
    with pytest.raises(PlanNotRunnable, match="no live worker runs generate"):
        service.create("poem", _plan(GenerateStep(prompt="a poem")), None)
    assert len(store.list_tasks()) == tasks_before


def test_a_synthesis_without_a_gemini_key_is_refused(store: SqliteStore) -> None:
    store.register_worker("http://127.0.0.1:1/a", name="any")  # advertises nothing: runs all
    service = GridService(store, fast_settings().model_copy(update={"gemini_api_key": None}))
    with pytest.raises(PlanNotRunnable, match="GEMINI_API_KEY"):
        service.create("outline", _plan(GenerateStep(prompt="intro"), synthesis=True), None)
    assert store.list_tasks() == []
