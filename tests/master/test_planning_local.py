"""The local planner's command language and plan validation."""

from __future__ import annotations

import json

import pytest

from master_app.intake import load_dataset
from master_app.planning import HELP, LocalPlanner, PlanError, parse_plan
from nexus_common.protocol import SubtaskKind
from tests.master.test_intake import EXAMPLES

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


@pytest.mark.parametrize(("command", "stop"), [
    ("count the primes below 20 million", 20_000_000),
    ("Count primes under 1,000", 1_000),
    ("how many primes are there below 2e6", 2_000_000),
    ("count the prime numbers up to 100", 101),
])
def test_primes_are_python_over_ranges_with_a_sum_reducer(command: str, stop: int) -> None:
    plan = LocalPlanner().plan(command, None, [])
    assert plan.operation is SubtaskKind.PYTHON
    assert plan.params["span"] == {"start": 0, "stop": stop, "parts": 8}
    assert plan.reduce is not None and plan.reduce.kind == "python"
    assert plan.reduce.code == "RESULT = sum(INPUT)"
    with pytest.raises(PlanError, match="no primes below 2"):
        LocalPlanner().plan("count the primes below 2", None, [])


def test_the_setup_guides_first_task_runs_offline() -> None:
    plan = LocalPlanner().plan("Create a Python script that prints 'Hello from NADG'", None, [])
    assert plan.operation is None and len(plan.subtasks) == 1
    step = plan.subtasks[0]
    assert step.kind == "python" and step.code == "print('Hello from NADG')"
    assert plan.reducer.kind == "concat"


def test_sentiment_labels_get_sentiment_phrasing() -> None:
    reviews = load_dataset(EXAMPLES / "reviews.txt").summary()
    plan = LocalPlanner().plan("classify the sentiment of each review as positive or negative",
                               reviews, [])
    assert plan.params["labels"] == ["positive", "negative"]
    described = plan.params["label_descriptions"]
    assert described == {"positive": "This is great, I love it.",
                         "negative": "This is bad, I hate it."}
    assert "This is about a" not in json.dumps(described)
    odd = LocalPlanner().plan("classify the sentiment of each review as joyful / furious",
                              reviews, [])
    assert odd.params["label_descriptions"] == {
        "joyful": "The sentiment of this review is joyful.",
        "furious": "The sentiment of this review is furious."}
    topics = LocalPlanner().plan("classify as billing / bug", SUMMARY, [])
    assert topics.params["label_descriptions"]["bug"] == "This is about a bug."


def test_a_task_beyond_the_local_planner_names_gemini() -> None:
    with pytest.raises(PlanError) as info:
        LocalPlanner().plan("an outline of five sections on federated learning, then merge "
                            "them", None, [])
    assert "GEMINI_API_KEY" in str(info.value) and "I did not understand" in str(info.value)
