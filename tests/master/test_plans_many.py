"""Plans of many subtasks, end to end: the real google-genai client against the local
Gemini API (recorded answers in data/gemini/), real workers on loopback (subprocesses
with a tiny chat model built here), a real SQLite store, and each merged answer asserted.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from database.backends.sqlite import SqliteStore
from database.models import SubtaskStatus, TaskStatus
from master_app.aggregate import TaskResult
from master_app.intake import Dataset, load_dataset
from master_app.local_grid import LocalGrid
from master_app.planning import LocalPlanner, Plan, check_runnable, parse_plan
from master_app.planning.gemini import PLAN_CACHE, GeminiPlanner, GeminiSynthesizer
from master_app.reduce import merged_result
from master_app.service.runner import JobRunner
from tests.master.conftest import fast_settings
from tests.master.gemini_server import FakeGemini, gemini_server, recorded, recorded_text
from tests.master.test_intake import EXAMPLES
from tests.worker.tiny_models import tiny_chat_model

DATA = Path(__file__).parent / "data"


@dataclass
class Grid:
    """Two real workers, their registry, the local Gemini API and clients of it."""

    store: SqliteStore
    token: str
    gemini: FakeGemini
    planner: GeminiPlanner
    synthesizer: GeminiSynthesizer


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    root = tmp_path_factory.mktemp("plans-many")
    model = tiny_chat_model(root / "tiny-chat")
    store = SqliteStore(root / "registry.db")
    token = secrets.token_urlsafe(32)
    env = {"NADG_GENERATE_MODEL": str(model), "HF_HUB_OFFLINE": "1",
           "NADG_TORCH_THREADS": "1"}
    try:
        with gemini_server() as (fake, url), LocalGrid(2, store, token, capacity=2, env=env):
            kwargs = {"model": "gemini-2.5-flash", "base_url": url, "timeout_s": 10,
                      "retries": 0}
            yield Grid(store, token, fake, GeminiPlanner("test-key", **kwargs),  # type: ignore[arg-type]
                       GeminiSynthesizer("test-key", **kwargs))  # type: ignore[arg-type]
    finally:
        store.close()


async def run_through(grid: Grid, command: str, dataset: Dataset | None
                      ) -> tuple[Plan, TaskResult]:
    """Plan with Gemini, check, persist, dispatch, reduce: what a front-end does."""
    PLAN_CACHE.clear()
    workers = grid.store.list_workers()
    plan = grid.planner.plan(command, dataset.summary() if dataset else None, workers)
    assert check_runnable(plan, workers, gemini_ready=True) == []
    settings = fast_settings(NADG_AUTH_TOKEN=grid.token, NADG_HEDGING=False)
    async with JobRunner(grid.store, settings) as runner:
        task_id = runner.submit(command, plan, dataset, workers)
        outcome = await runner.run(task_id)
        assert outcome.ok, outcome.error
        result = await merged_result(grid.store, task_id, dispatch=runner.dispatcher,
                                     synthesizer=grid.synthesizer)
    assert result.answer is not None and result.answer.ok, result.answer
    return plan, result


async def test_hello_from_nadg_without_data(grid: Grid) -> None:
    grid.gemini.reset(recorded("hello"))
    plan, result = await run_through(
        grid, "Create a Python script that prints 'Hello from NADG'", None)
    assert not plan.is_map and [s.kind for s in plan.subtasks] == ["python"]
    assert result.answer is not None and result.answer.kind == "concat"
    assert result.answer.text == "Hello from NADG"
    body = grid.gemini.requests[0]
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    schema = json.dumps(body["generationConfig"].get("responseSchema")
                        or body["generationConfig"].get("responseJsonSchema"))
    assert "subtasks" in schema and "reduce" in schema, "Gemini is held to the plan schema"
    assert "Live workers: 2 (they run: classify, embed, generate, noop, python" in \
        grid.gemini.prompt(0), "Gemini is told what the workers can run"


async def test_count_the_primes_below_20_million(grid: Grid) -> None:
    grid.gemini.reset(recorded("primes"))
    started = time.monotonic()
    plan, result = await run_through(grid, "count the primes below 20 million", None)
    took = time.monotonic() - started
    assert plan.params["span"] == {"start": 0, "stop": 20_000_000, "parts": 8}
    assert len(result.table) == 8, "eight ranges, one python subtask each"
    assert result.table["input"].tolist()[0] == [0, 2_500_000]
    assert result.answer is not None and result.answer.kind == "python"
    assert result.answer.value == 1_270_607
    assert result.answer.detail["inputs"] == 8
    assert took < 20, f"the 20 million count took {took:.1f}s"
    stored = grid.store.get_task(result.task_id)
    assert stored.task.result_summary is not None
    assert stored.task.result_summary["answer"]["value"] == 1_270_607, "the answer is kept"
    assert all(s.status is SubtaskStatus.COMPLETED for s in stored.subtasks)


async def test_three_taglines_for_each_product(grid: Grid) -> None:
    grid.gemini.reset(recorded("taglines"))
    data = load_dataset(DATA / "products.csv")
    plan, result = await run_through(
        grid, "write three taglines for each product in this CSV", data)
    products = list(csv.DictReader((DATA / "products.csv").open()))
    assert plan.operation is not None and plan.operation.value == "generate"
    prompt = json.dumps(grid.gemini.requests[0])
    assert "Nimbus Pillow" not in prompt, "Gemini saw the summary (3 sample rows), not all"
    table = result.table
    assert table["row"].tolist() == list(range(len(products))), "one result per product"
    assert table["text"].tolist() == [p["description"] for p in products]
    assert table["error"].isna().all()
    stored = grid.store.get_task(result.task_id).subtasks
    prompts = [prompt for sub in stored for prompt in sub.payload["prompts"]]
    assert prompts[3] == ("Write three short, catchy taglines for this product.\n"
                          "Product: Nimbus Pillow\nDescription: A memory-foam pillow that "
                          "stays cool all night.\nTaglines:"), "each row fills the template"
    assert all(isinstance(o, str) for o in table["output"]), table
    assert result.answer is not None and result.answer.kind == "table"
    assert result.answer.text is not None
    answered = list(csv.DictReader(io.StringIO(result.answer.text)))
    assert [r["text"] for r in answered] == [p["description"] for p in products]
    assert [r["output"] for r in answered] == table["output"].tolist()


async def test_outline_of_five_sections_then_merged_by_gemini(grid: Grid) -> None:
    grid.gemini.reset(recorded("outline_plan"), recorded("outline_synthesis"))
    plan, result = await run_through(
        grid, "an outline of five sections on federated learning, then merge them", None)
    assert [s.kind for s in plan.subtasks] == ["generate"] * 5
    assert result.answer is not None and result.answer.kind == "synthesis"
    assert result.answer.text == recorded_text("outline_synthesis").strip()
    assert len(grid.gemini.requests) == 2, "one planner call, one synthesis call"
    synthesis = grid.gemini.requests[1]
    assert synthesis["generationConfig"]["responseMimeType"] == "text/plain"
    sent = grid.gemini.prompt(1)
    sections = [o.strip() for o in result.table["output"]]
    assert len(sections) == 5
    for i, section in enumerate(sections, start=1):
        assert f"### Result {i}" in sent
        assert section in sent, f"section {i} was sent to the synthesis"
    assert "Merge the five sections" in sent and "federated learning" in sent
    again = await merged_result(grid.store, result.task_id, synthesizer=grid.synthesizer)
    assert again.answer is not None and again.answer.text == result.answer.text
    assert len(grid.gemini.requests) == 2, "a kept answer is not synthesised again"
    assert grid.store.get_task(result.task_id).task.status is TaskStatus.COMPLETED


async def run_local(grid: Grid, command: str, dataset: Dataset | None) -> TaskResult:
    """Plan with the local planner (no Gemini), then run and reduce on the real workers."""
    workers = grid.store.list_workers()
    plan = LocalPlanner().plan(command, dataset.summary() if dataset else None, workers)
    assert check_runnable(plan, workers, gemini_ready=False) == []
    settings = fast_settings(NADG_AUTH_TOKEN=grid.token, NADG_HEDGING=False)
    async with JobRunner(grid.store, settings) as runner:
        task_id = runner.submit(command, plan, dataset, workers)
        assert (await runner.run(task_id)).ok
        return await merged_result(grid.store, task_id, dispatch=runner.dispatcher)


async def test_local_planner_primes_and_hello_on_real_workers(grid: Grid) -> None:
    asked = len(grid.gemini.requests)
    primes = await run_local(grid, "count the primes up to 100000", None)
    assert primes.answer is not None and primes.answer.value == 9592
    hello = await run_local(grid, "Create a Python script that prints 'Hello from NADG'", None)
    assert hello.answer is not None and hello.answer.text == "Hello from NADG"
    assert len(grid.gemini.requests) == asked, "the local planner never calls Gemini"


async def test_sentiment_phrasing_on_real_workers(grid: Grid) -> None:
    # examples/reviews.txt labelled by hand (the neutral-sounding ones by their lean).
    truth = ["positive", "negative", "positive", "negative", "positive", "negative",
             "positive", "positive", "negative", "positive", "positive", "negative"]
    result = await run_local(
        grid, "classify the sentiment of each review as positive or negative",
        load_dataset(EXAMPLES / "reviews.txt"))
    labels = result.table["label"].tolist()
    correct = sum(a == b for a, b in zip(labels, truth, strict=True))
    assert correct >= 11, f"sentiment phrasing got {correct}/12 (the topic template: 9/12)"


async def test_the_reducer_runs_on_a_worker_and_its_failure_is_an_answer_error(
        grid: Grid) -> None:
    settings = fast_settings(NADG_AUTH_TOKEN=grid.token, NADG_HEDGING=False)
    workers = grid.store.list_workers()
    for code, check in [
        ("import os\nRESULT = [os.getpid(), len(INPUT)]", "pid"),
        ("RESULT = sum(INPUT) / 0", "fails"),
    ]:
        plan = parse_plan({"operation": "python",
                           "params": {"code": "RESULT = INPUT", "range": 3},
                           "reduce": {"kind": "python", "code": code}})
        async with JobRunner(grid.store, settings) as runner:
            task_id = runner.submit("reduce", plan, None, workers)
            assert (await runner.run(task_id)).ok
            result = await merged_result(grid.store, task_id, dispatch=runner.dispatcher)
        assert result.answer is not None
        if check == "pid":
            assert result.answer.ok and result.answer.value[1] == 3
            assert result.answer.value[0] != os.getpid(), "the master never runs the reducer"
        else:
            assert not result.answer.ok and "ZeroDivisionError" in (result.answer.error or "")
            assert len(result.table) == 3, "the results table stays"
            kept = grid.store.get_task(task_id).task.result_summary or {}
            assert "answer" not in kept, "a failed answer is not kept: a rerun may succeed"
