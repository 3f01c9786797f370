"""Plan shapes: validation and limits, plan files, sharding of listed subtasks, whether the
grid can run a plan, and the deterministic parts of the reduce step."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
import pytest

from database.backends.sqlite import SqliteStore
from database.models import SubtaskStatus, WorkerNode, WorkerStatus
from master_app.aggregate import TaskResult, aggregate, texts_of, values_of
from master_app.intake import load_dataset
from master_app.planning import Plan, PlanError, check_runnable, parse_plan, parse_plan_json
from master_app.planning.gemini import GeminiPlan
from master_app.planning.plan import span_parts
from master_app.planning.steps import MAX_PLAN_SUBTASKS, SynthesisReduce
from master_app.reduce import fair_shares, reduce_result, synthesis_prompt
from master_app.sharding import build_shards, payload_of
from nexus_common import protocol
from nexus_common.protocol import SubtaskResult
from tests.master.fakes import node
from tests.master.test_intake import EXAMPLES

TICKETS = load_dataset(EXAMPLES / "tickets.csv")

LIST_PLAN: dict[str, Any] = {
    "subtasks": [
        {"kind": "python", "code": "print(INPUT)", "input": {"n": 1}, "description": "one"},
        {"kind": "generate", "prompt": "Write a haiku about grids.", "max_new_tokens": 20},
        {"kind": "embed", "rows": {"start": 2, "stop": 5}, "text_column": "text"},
        {"kind": "classify", "rows": {"start": 0, "stop": 2}, "text_column": "text",
         "labels": ["billing", "bug"]},
        {"kind": "classify", "texts": ["a typed sentence"], "labels": ["x", "y"]},
        {"kind": "noop", "echo": 7},
    ],
    "reduce": {"kind": "synthesis", "instruction": "Merge them."},
}


def test_every_shape_round_trips_through_a_plan_file() -> None:
    shapes = [
        LIST_PLAN,
        {"operation": "python", "params": {"code": "RESULT = INPUT",
                                           "span": {"start": 0, "stop": 100, "parts": 3}},
         "reduce": {"kind": "python", "code": "RESULT = sum(x[1] - x[0] for x in INPUT)"}},
        {"operation": "classify", "text_column": "text", "params": {"labels": ["a", "b"]}},
        {"subtasks": [{"kind": "python", "code": "print(1)"}]},
    ]
    for shape in shapes:
        plan = parse_plan(shape)
        again = parse_plan_json(plan.model_dump_json())
        assert again == plan
        assert again.reduce is not None
    assert parse_plan(shapes[2]).reducer.kind == "table", "a map answers with its table"
    assert parse_plan(shapes[3]).reducer.kind == "concat", "listed subtasks are joined"


@pytest.mark.parametrize(("shape", "message"), [
    ({}, "needs an 'operation'"),
    ({"operation": "noop", "subtasks": [{"kind": "noop"}]}, "not both"),
    ({"subtasks": [{"kind": "noop"}], "params": {"count": 2}}, "'params' belong"),
    ({"subtasks": [{"kind": "teleport"}]}, "teleport"),
    ({"subtasks": [{"kind": "noop"}] * (MAX_PLAN_SUBTASKS + 1)}, "at most 256"),
    ({"subtasks": [{"kind": "python", "code": ""}]}, "code"),
    ({"subtasks": [{"kind": "python", "code": "x", "input": "z" * 70_000}]},
     "inputs are parameters, not data"),
    ({"subtasks": [{"kind": "generate", "prompt": "p" * (protocol.MAX_TEXT_CHARS + 1)}]},
     "prompt"),
    ({"subtasks": [{"kind": "generate", "prompt": "p", "max_new_tokens": 10_000}]},
     "max_new_tokens"),
    ({"subtasks": [{"kind": "embed", "rows": {"start": 5, "stop": 5}}]}, "must be above"),
    ({"subtasks": [{"kind": "embed", "rows": {"start": 0, "stop": 10_000}}]}, "at most 512"),
    ({"subtasks": [{"kind": "embed", "rows": {"start": 0, "stop": 2}, "texts": ["a"]}]},
     "exactly one of"),
    ({"subtasks": [{"kind": "classify", "texts": ["a"], "labels": ["only"]}]}, "labels"),
    ({"subtasks": [{"kind": "noop"}], "reduce": {"kind": "vote"}}, "vote"),
    ({"subtasks": [{"kind": "noop"}], "reduce": {"kind": "synthesis", "instruction": "m",
                                                 "max_input_tokens": 10**7}},
     "max_input_tokens"),
    ({"subtasks": [{"kind": "noop"}], "reduce": {"kind": "python"}}, "code"),
    ({"operation": "python", "params": {"code": "x", "span": {"start": 9, "stop": 3}}},
     "start < stop"),
    ({"operation": "python", "params": {"code": "x", "span": {"stop": 10, "parts": 11}}},
     "parts must be in 1..10"),
    ({"operation": "python", "params": {"code": "x", "span": {"stop": 1.5}}}, "integers"),
    ({"operation": "python", "params": {"code": "x", "range": 3,
                                        "span": {"stop": 10}}}, "one of"),
    ({"operation": "python", "params": {"code": "x", "inputs": ["y" * 2000] * 600}},
     "give data as a file"),
    ({"subtasks": [{"kind": "python", "code": "#" * 90_000}] * 50}, "data goes in a file"),
])
def test_invalid_plans_are_refused_with_the_reason(shape: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        parse_plan(shape)


def test_a_plan_file_that_is_not_json_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="not valid"):
        parse_plan_json('{"subtasks": [')


def test_listed_subtasks_are_checked_against_the_data() -> None:
    plan = parse_plan(LIST_PLAN)
    with pytest.raises(PlanError, match="give a data file"):
        plan.check(None)
    plan.check(TICKETS.summary())
    beyond = parse_plan({"subtasks": [{"kind": "embed", "rows": {"start": 30, "stop": 41},
                                       "text_column": "text"}]})
    with pytest.raises(PlanError, match="rows up to 40, but the data has 40 rows"):
        beyond.check(TICKETS.summary())
    wrong = parse_plan({"subtasks": [{"kind": "embed", "rows": {"start": 0, "stop": 1},
                                      "text_column": "body"}]})
    with pytest.raises(PlanError, match="'body'"):
        wrong.check(TICKETS.summary())


def test_listed_subtasks_shard_one_each_with_the_data_filled_in() -> None:
    plan = parse_plan(LIST_PLAN)
    shards = build_shards(plan, TICKETS, [])
    assert [s.kind.value if s.kind else None for s in shards] == [
        "python", "generate", "embed", "classify", "classify", "noop"]
    texts = TICKETS.texts("text")
    assert shards[2].rows == (2, 3, 4) and shards[2].payload["texts"] == texts[2:5]
    assert shards[3].payload["texts"] == texts[0:2]
    assert shards[4].payload["texts"] == ["a typed sentence"]
    assert shards[0].payload["input"] == {"n": 1}
    for shard in shards:
        record = shard.to_new_subtask()
        protocol.Subtask.model_validate({"id": "s", "task_id": "t", "kind": record.kind,
                                         "payload": payload_of(record.payload)})
    assert texts[2] not in plan.model_dump_json(), "the plan names rows, never their text"


def test_a_span_is_cut_into_even_ranges_in_order() -> None:
    assert span_parts({"start": 0, "stop": 20_000_000, "parts": 8})[:2] == [
        [0, 2_500_000], [2_500_000, 5_000_000]]
    parts = span_parts({"start": 3, "stop": 17, "parts": 4})
    assert parts[0][0] == 3 and parts[-1][1] == 17
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
    plan = parse_plan({"operation": "python", "params": {
        "code": "RESULT = INPUT", "span": {"start": 0, "stop": 10, "parts": 3}}})
    assert [s.payload["input"] for s in build_shards(plan, None, [])] == [[0, 3], [3, 6],
                                                                           [6, 10]]


def test_generate_map_keeps_the_input_beside_the_prompt_off_the_wire() -> None:
    plan = parse_plan({"operation": "generate", "text_column": "text",
                       "params": {"prompt_template": "Reply to: {text}"}})
    shard = build_shards(plan, TICKETS, [node("http://a")])[0]
    stored = shard.to_new_subtask().payload
    assert stored["row_texts"][0] == TICKETS.texts("text")[0]
    assert "row_texts" not in payload_of(stored) and "rows" not in payload_of(stored)


def worker(caps: tuple[str, ...], status: WorkerStatus = WorkerStatus.ACTIVE) -> WorkerNode:
    return dataclasses.replace(node("http://w"), capabilities=caps, status=status, name="w")


def test_check_runnable_names_what_no_live_worker_offers() -> None:
    plan = parse_plan(LIST_PLAN)
    assert check_runnable(plan, []) == [
        "no live worker in the registry; start one or add one with "
        "`python -m database.manage_workers add URL`"]
    assert check_runnable(plan, [worker(())]) == [], "a worker that says nothing may run all"
    problems = check_runnable(plan, [worker(("python", "embed", "classify", "noop"))])
    assert len(problems) == 1 and "no live worker runs generate (needed by subtask 1)" \
        in problems[0] and "w: python, embed, classify, noop" in problems[0]
    offline = check_runnable(plan, [worker(("generate",), WorkerStatus.OFFLINE)])
    assert offline and "no live worker" in offline[0]
    assert "needs Gemini: set GEMINI_API_KEY" in check_runnable(
        plan, [worker(())], gemini_ready=False)[0]


def test_check_runnable_matches_advertised_models() -> None:
    plan = parse_plan({"subtasks": [{"kind": "generate", "prompt": "p", "model": "org/big"}],
                       "reduce": {"kind": "python", "code": "RESULT = INPUT"}})
    small = worker(("generate", "generate:org/small", "python"))
    assert "generate with model 'org/big'" in check_runnable(plan, [small])[0]
    assert check_runnable(plan, [worker(("generate", "generate:org/big", "python"))]) == []
    assert check_runnable(plan, [worker(("generate", "python"))]) == [], \
        "no model list: it loads any model by id"
    no_python = check_runnable(plan, [worker(("generate",))])
    assert no_python and "python reduce step" in no_python[0]


def test_fair_shares_keep_short_texts_whole_and_fit_the_budget() -> None:
    assert fair_shares([10, 1000, 20], 130) == [10, 100, 20]
    assert fair_shares([5, 5], 100) == [5, 5]
    shares = fair_shares([900, 800, 50], 600)
    assert sum(shares) <= 600 and shares[2] == 50 and shares[0] == shares[1] == 275


def test_synthesis_prompt_fits_its_budget_and_keeps_every_result() -> None:
    reducer = SynthesisReduce(instruction="Merge.", max_input_tokens=500)
    texts = ["short one", "x" * 5000, "y" * 5000]
    prompt = synthesis_prompt(reducer, "do the thing", texts)
    assert len(prompt) <= 500 * 4
    assert "short one" in prompt and "### Result 3" in prompt
    assert "characters cut to fit" in prompt and "do the thing" in prompt


def _result(rows: list[dict[str, Any]], operation: str = "python",
            failures: list[Any] | None = None) -> TaskResult:
    return TaskResult(task_id="t", operation=operation, status="completed",
                      table=pd.DataFrame(rows), failures=failures or [])


async def test_deterministic_reduce_steps_and_their_refusals(store: SqliteStore) -> None:
    plan = parse_plan({"subtasks": [{"kind": "python", "code": "print('Hello')"},
                                    {"kind": "python", "code": "RESULT = 41"}]})
    record = store.create_task("c", plan.model_dump(mode="json"),
                               [s.to_new_subtask() for s in build_shards(plan, None, [])])
    outputs = [{"exit_code": 0, "result": None, "stdout": "Hello\n", "stderr": ""},
               {"exit_code": 0, "result": 41, "stdout": "", "stderr": ""}]
    for sub, output in zip(store.get_task(record.id).subtasks, outputs, strict=True):
        store.record_result(sub.id, SubtaskStatus.COMPLETED, result=SubtaskResult(
            id=sub.id, status="completed", output=output).model_dump())
    result = aggregate(store.get_task(record.id))
    assert result.table["description"].tolist() == ["", ""]
    assert values_of(result) == ["Hello\n", 41] and texts_of(result) == ["Hello", "41"]
    assert isinstance(values_of(result)[1], int), "no float from a gap in an int column"
    concat = await reduce_result(parse_plan({"subtasks": [{"kind": "noop"}]}), result,
                                 command="c")
    assert concat.ok and concat.text == "Hello\n\n41"
    failed = _result([{"idx": 0, "output": 1}], failures=["lost"])
    answer = await reduce_result(parse_plan({"subtasks": [{"kind": "noop"}]}), failed,
                                 command="c")
    assert not answer.ok and "no merged answer" in (answer.error or "")
    synth = parse_plan({"subtasks": [{"kind": "noop"}],
                        "reduce": {"kind": "synthesis", "instruction": "m"}})
    no_key = await reduce_result(synth, result, command="c", synthesizer=None)
    assert no_key.error is not None and "GEMINI_API_KEY" in no_key.error
    reducer = parse_plan({"subtasks": [{"kind": "noop"}],
                          "reduce": {"kind": "python", "code": "RESULT = 1"}})
    nobody = await reduce_result(reducer, result, command="c", dispatch=None)
    assert nobody.error is not None and "no live worker runs python" in nobody.error


def test_gemini_answers_convert_to_every_plan_shape() -> None:
    steps = GeminiPlan.model_validate({
        "operation": "subtasks", "subtasks": [
            {"kind": "python", "code": "print(INPUT)", "input_json": "[1, 2]"},
            {"kind": "classify", "text_column": "text", "row_start": 0, "row_stop": 3,
             "labels": ["a", "b"]},
            {"kind": "generate", "prompt": "p", "max_new_tokens": 9999}],
        "reduce": {"kind": "synthesis"}})
    plan = parse_plan(steps.to_plan_dict())
    assert plan.subtasks[0].kind == "python" and plan.subtasks[0].input == [1, 2]
    assert plan.reducer.kind == "synthesis"
    assert plan.subtasks[2].max_new_tokens == protocol.MAX_PROMPT_TOKENS_NEW  # type: ignore[union-attr]
    span = GeminiPlan.model_validate({"operation": "python", "code": "RESULT = 0",
                                      "span_stop": 1000, "span_parts": 4,
                                      "reduce": {"kind": "python", "code": "RESULT = 1"}})
    assert parse_plan(span.to_plan_dict()).params["span"] == {"start": 0, "stop": 1000,
                                                              "parts": 4}
    assert isinstance(parse_plan(span.to_plan_dict()), Plan)


def test_preview_cards_show_kind_needs_description_and_the_reduce_step() -> None:
    from master_app.ui.plan_view import plan_cards

    cards = plan_cards(parse_plan(LIST_PLAN), TICKETS.summary())
    assert [c.kind for c in cards] == ["python", "generate", "embed", "classify", "classify",
                                       "noop", "synthesis"]
    assert cards[0].description == "one" and cards[0].needs == "a python sandbox"
    assert cards[1].description == "complete: Write a haiku about grids."
    assert cards[2].description == "embed rows 2..4 of text"
    assert cards[-1].title == "Reduce: synthesis"
    assert "GEMINI_API_KEY" in cards[-1].needs
    primes = parse_plan({"operation": "python", "params": {
        "code": "RESULT = 1", "span": {"start": 0, "stop": 20_000_000, "parts": 8}},
        "reduce": {"kind": "python", "code": "RESULT = sum(INPUT)"}})
    cards = plan_cards(primes)
    assert cards[0].description == "python over 8 ranges from 0 to 20,000,000"
    assert cards[1].description == "one more python subtask over all results: " \
        "RESULT = sum(INPUT)"
    many = parse_plan({"subtasks": [{"kind": "noop"}] * 30})
    cards = plan_cards(many)
    assert len(cards) == 24 + 2 and cards[-2].description == "6 more subtasks"


def test_preview_draws_cards_and_refuses_a_plan_no_worker_runs() -> None:
    from streamlit.testing.v1 import AppTest

    def page() -> None:
        import dataclasses

        import streamlit as st

        from database.models import WorkerNode, WorkerStatus
        from master_app.planning import parse_plan
        from master_app.ui.plan_view import plan_preview_ui

        plan = parse_plan({"subtasks": [{"kind": "generate", "prompt": "Say hi."}]})
        only_python = WorkerNode(id=1, vm_url="http://w", status=WorkerStatus.ACTIVE,
                                 name="w1", capabilities=("python",))
        problems = plan_preview_ui(plan, None, [dataclasses.replace(only_python)])
        st.session_state["problems"] = problems

    app = AppTest.from_function(page).run(timeout=30)
    assert not app.exception
    text = " ".join(m.value for m in app.markdown) + " ".join(c.value for c in app.caption)
    assert "Subtask 1" in text and "needs the worker's generation model" in text
    assert "Reduce: concat" in text
    assert app.error and "no live worker runs generate" in app.error[0].value
    assert app.session_state["problems"] == [app.error[0].value.removeprefix("Cannot run: ")]


async def test_a_huge_answer_is_cut_and_says_so() -> None:
    from master_app.reduce import MAX_ANSWER_CHARS

    result = _result([{"idx": 0, "output": "x"}, {"idx": 1, "output": "y"}])
    result.outputs = ["a" * MAX_ANSWER_CHARS, "b" * 10]
    answer = await reduce_result(parse_plan({"subtasks": [{"kind": "noop"}] * 2}), result,
                                 command="c")
    assert answer.text is not None and len(answer.text) == MAX_ANSWER_CHARS
    assert answer.detail["cut_chars"] == 12


def test_prompt_templates_fill_columns_plainly_and_fit_the_protocol() -> None:
    from master_app.planning.plan import render_prompt

    row = {"name": "Lamp {text}", "price": 12}
    assert render_prompt("{name} costs {price}: {text} {missing}", "bright", row) == \
        "Lamp {text} costs 12: bright {missing}", "values are not expanded again"
    assert render_prompt("{__class__} {0.__globals__}", "t", row) == \
        "{__class__} {0.__globals__}", "no format-string access to attributes"
    long = render_prompt("Summarise: {text}\nSummary:", "x" * 20_000)
    assert len(long) == protocol.MAX_TEXT_CHARS and long.endswith("\nSummary:")
    data = load_dataset(b"name,description\nLamp,bright\nMug,big\n", "p.csv")
    plan = parse_plan({"operation": "generate", "text_column": "description",
                       "params": {"prompt_template": "{name}: {text}"}})
    plan.check(data.summary())
    assert build_shards(plan, data, [])[0].payload["prompts"] == ["Lamp: bright", "Mug: big"]
    wrong = parse_plan({"operation": "generate", "text_column": "description",
                        "params": {"prompt_template": "{title}: {text}"}})
    with pytest.raises(PlanError, match=r"names \['title'\]"):
        wrong.check(data.summary())
    with pytest.raises(PlanError, match="prompt_template"):
        parse_plan({"operation": "generate", "params": {"prompt_template": "no slot"}})
