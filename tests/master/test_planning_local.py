"""The local planner's command language and plan validation."""

from __future__ import annotations

import pytest

from master_app.intake import load_dataset
from master_app.planning import HELP, LocalPlanner, PlanError, parse_plan
from tests.master.test_intake import EXAMPLES
from worker_node.protocol import SubtaskKind

SUMMARY = load_dataset(EXAMPLES / "tickets.csv").summary()


@pytest.mark.parametrize(("command", "kind", "params"), [
    ("classify as billing / bug / feature", SubtaskKind.CLASSIFY,
     {"labels": ["billing", "bug", "feature"]}),
    ("Classify these tickets into billing, bug or feature", SubtaskKind.CLASSIFY,
     {"labels": ["billing", "bug", "feature"]}),
    ("embed", SubtaskKind.EMBED, {}),
    ("sentiment", SubtaskKind.CLASSIFY, {"labels": ["positive", "negative", "neutral"]}),
    ("summarise", SubtaskKind.GENERATE, {"max_new_tokens": 48}),
    ("run python per row: RESULT = len(INPUT)", SubtaskKind.PYTHON,
     {"code": "RESULT = len(INPUT)"}),
])
def test_commands_with_data(command: str, kind: SubtaskKind, params: dict[str, object]) -> None:
    plan = LocalPlanner().plan(command, SUMMARY, [])
    assert plan.operation is kind
    for key, value in params.items():
        assert plan.params[key] == value
    if kind is not SubtaskKind.PYTHON:
        assert plan.text_column == "text"


def test_commands_without_data() -> None:
    plan = LocalPlanner().plan("run python over range(50): RESULT = INPUT ** 2", None, [])
    assert plan.operation is SubtaskKind.PYTHON and plan.params["range"] == 50
    assert plan.params["code"] == "RESULT = INPUT ** 2"
    noop = LocalPlanner().plan("noop 200 sleep 30", None, [])
    assert noop.params == {"count": 200, "sleep_ms": 30.0}


def test_column_choice_and_errors() -> None:
    plan = LocalPlanner().plan("embed column id", SUMMARY, [])
    assert plan.text_column == "id"
    with pytest.raises(PlanError, match="only \\['id', 'text', 'label'\\]"):
        LocalPlanner().plan("embed column body", SUMMARY, [])
    with pytest.raises(PlanError, match="give a data file"):
        LocalPlanner().plan("classify as a / b", None, [])
    with pytest.raises(PlanError) as info:
        LocalPlanner().plan("make me a sandwich", SUMMARY, [])
    assert HELP in str(info.value) and "make me a sandwich" in str(info.value)


def test_plan_validation() -> None:
    with pytest.raises(PlanError, match="at least 2 labels"):
        parse_plan({"operation": "classify", "params": {"labels": ["a"]}})
    with pytest.raises(PlanError, match="prompt_template"):
        parse_plan({"operation": "generate", "params": {"prompt_template": "no slot"}})
    with pytest.raises(PlanError, match="training"):
        parse_plan({"operation": "train"})
    with pytest.raises(PlanError, match="range"):
        parse_plan({"operation": "python", "params": {"code": "x", "range": 0}})
    with pytest.raises(PlanError, match="shard_size"):
        parse_plan({"operation": "embed", "shard_size": 10_000})
