"""GeminiPlanner with the real google-genai client against a local generateContent server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from master_app.intake import DataSummary
from master_app.planning import PlanError, PlannerUnavailable, choose_planner
from master_app.planning.gemini import PLAN_CACHE, GeminiPlanner
from nexus_common.protocol import SubtaskKind
from tests.master.conftest import fast_settings
from tests.master.gemini_server import FakeGemini, error, gemini_server, ok_text
from tests.support.servers import REPO_ROOT

SUMMARY = DataSummary(filename="tickets.csv", format="csv", row_count=40,
                      columns=["id", "text"], dtypes={"id": "object", "text": "object"},
                      sample_rows=[{"id": "1", "text": "I was charged twice"}])


GOOD = json.dumps({"operation": "classify", "text_column": "text",
                   "labels": ["billing", "bug", "feature"],
                   "explanation": "classify each ticket"})


@pytest.fixture(scope="module")
def gemini() -> Iterator[tuple[FakeGemini, str]]:
    with gemini_server() as served:
        yield served


def planner(url: str, sleeps: list[float], retries: int = 2) -> GeminiPlanner:
    return GeminiPlanner("fake-key", model="gemini-test", base_url=url, timeout_s=10,
                         retries=retries, backoff_base_s=0.01, sleep=sleeps.append)


def reset(fake: FakeGemini, *answers: tuple[int, Any]) -> None:
    PLAN_CACHE.clear()
    fake.reset(*answers)


def test_valid_plan_sees_summary_only_and_is_cached(gemini: tuple[FakeGemini, str]) -> None:
    fake, url = gemini
    reset(fake, ok_text(GOOD))
    sleeps: list[float] = []
    p = planner(url, sleeps)
    plan = p.plan("classify these tickets as billing, bug or feature", SUMMARY, [])
    assert plan.operation is SubtaskKind.CLASSIFY
    assert plan.params["labels"] == ["billing", "bug", "feature"]
    assert plan.text_column == "text"
    assert fake.paths == ["gemini-test"]
    body = fake.requests[0]
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    assert "responseSchema" in body["generationConfig"] or \
        "responseJsonSchema" in body["generationConfig"]
    prompt = json.dumps(body["contents"])
    assert "tickets.csv" in prompt and "row_count" in prompt
    again = planner(url, sleeps).plan("classify these tickets as billing, bug or feature",
                                      SUMMARY, [])
    assert again == plan and len(fake.requests) == 1, "an identical plan comes from the cache"
    p.plan("classify these tickets as billing or bug", SUMMARY, [])
    assert len(fake.requests) == 2, "another command is planned again"


def test_malformed_json_is_a_clear_error(gemini: tuple[FakeGemini, str]) -> None:
    fake, url = gemini
    reset(fake, ok_text("{not json"))
    with pytest.raises(PlanError, match="not a valid plan"):
        planner(url, []).plan("classify", SUMMARY, [])


def test_schema_invalid_plan_is_rejected(gemini: tuple[FakeGemini, str]) -> None:
    fake, url = gemini
    reset(fake, ok_text(json.dumps({"operation": "classify", "text_column": "text",
                                    "labels": ["only-one"]})))
    with pytest.raises(PlanError, match="at least 2 labels"):
        planner(url, []).plan("classify", SUMMARY, [])
    reset(fake, ok_text(json.dumps({"operation": "teleport", "explanation": "?"})))
    with pytest.raises(PlanError, match="operation"):
        planner(url, []).plan("classify", SUMMARY, [])
    reset(fake, ok_text(json.dumps({"operation": "embed", "text_column": "body"})))
    with pytest.raises(PlanError, match="'body'"):
        planner(url, []).plan("embed", SUMMARY, [])


def test_429_then_success_honours_retry_delay(gemini: tuple[FakeGemini, str]) -> None:
    fake, url = gemini
    reset(fake, error(429, "RESOURCE_EXHAUSTED", "1.5s"), error(503, "UNAVAILABLE"),
          ok_text(GOOD))
    sleeps: list[float] = []
    plan = planner(url, sleeps).plan("classify", SUMMARY, [])
    assert plan.operation is SubtaskKind.CLASSIFY
    assert len(fake.requests) == 3
    assert sleeps == [1.5, 0.0], "RetryInfo delay, then the Retry-After header"


def test_500_every_time_gives_up_after_retries(gemini: tuple[FakeGemini, str]) -> None:
    fake, url = gemini
    reset(fake, error(500, "INTERNAL"))
    sleeps: list[float] = []
    with pytest.raises(PlannerUnavailable, match="500"):
        planner(url, sleeps, retries=2).plan("classify", SUMMARY, [])
    assert len(fake.requests) == 3 and len(sleeps) == 2


def test_no_data_python_sweep(gemini: tuple[FakeGemini, str]) -> None:
    fake, url = gemini
    reset(fake, ok_text(json.dumps({"operation": "python", "code": "RESULT = INPUT * 2",
                                    "python_inputs": ["1", "2.5", "\"a\""]})))
    plan = planner(url, []).plan("double 1, 2.5 and 'a'", None, [])
    assert plan.operation is SubtaskKind.PYTHON
    assert plan.params["inputs"] == [1, 2.5, "a"]


def test_400_is_not_retried(gemini: tuple[FakeGemini, str]) -> None:
    fake, url = gemini
    reset(fake, error(400, "INVALID_ARGUMENT"))
    with pytest.raises(PlannerUnavailable, match="400"):
        planner(url, []).plan("classify", SUMMARY, [])
    assert len(fake.requests) == 1


def test_choose_planner() -> None:
    p, why = choose_planner(fast_settings(), None)
    assert p.name == "local" and "no GEMINI_API_KEY" in why
    p, why = choose_planner(fast_settings(GEMINI_API_KEY="k"), None)
    assert p.name == "gemini" and "gemini-2.5-flash" in why
    p, why = choose_planner(fast_settings(GEMINI_API_KEY="k"), "local")
    assert p.name == "local"
    with pytest.raises(PlanError, match="GEMINI_API_KEY"):
        choose_planner(fast_settings(), "gemini")


def test_cli_uses_gemini_from_the_environment(gemini: tuple[FakeGemini, str],
                                              tmp_path: Path) -> None:
    fake, url = gemini
    reset(fake, ok_text(GOOD))
    env = {**os.environ, "GEMINI_API_KEY": "fake-key", "NADG_GEMINI_BASE_URL": url,
           "NADG_GEMINI_MODEL": "gemini-cli-test", "NADG_REGISTRY": str(tmp_path / "r.db"),
           "DATABASE_URL": "", "SUPABASE_URL": ""}
    done = subprocess.run([sys.executable, "-m", "master_app", "run", "sort these tickets",
                           "--data", str(REPO_ROOT / "examples" / "tickets.csv")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert fake.paths == ["gemini-cli-test"]
    assert "plan (Gemini planner (gemini-cli-test; GEMINI_API_KEY is set))" in done.stderr
    assert done.returncode == 2 and "no live workers" in done.stderr
    sent = json.dumps(fake.requests[0])
    assert "Our invoice total does not match" not in sent, "the planner sees 3 sample rows only"


def test_429_asking_for_longer_than_the_cap_fails_at_once(
        gemini: tuple[FakeGemini, str]) -> None:
    fake, url = gemini
    reset(fake, error(429, "RESOURCE_EXHAUSTED", "3600s"), ok_text(GOOD))
    sleeps: list[float] = []
    p = GeminiPlanner("fake-key", model="gemini-test", base_url=url, timeout_s=10, retries=4,
                      max_retry_delay_s=60, backoff_base_s=0.01, sleep=sleeps.append)
    with pytest.raises(PlannerUnavailable, match="retry in 3600s"):
        p.plan("classify", SUMMARY, [])
    assert len(fake.requests) == 1 and sleeps == [], \
        "no retry sooner than the server asked, and no minutes spent waiting"


def test_oversized_hints_are_clamped_not_fatal(gemini: tuple[FakeGemini, str]) -> None:
    fake, url = gemini
    reset(fake, ok_text(json.dumps({"operation": "classify", "text_column": "text",
                                    "labels": ["billing", "bug"], "shard_size": 5000})))
    plan = planner(url, []).plan("classify as billing or bug", SUMMARY, [])
    assert plan.operation is SubtaskKind.CLASSIFY and plan.shard_size == 512
    reset(fake, ok_text(json.dumps({"operation": "generate", "text_column": "text",
                                    "prompt_template": "Reply to: {text}",
                                    "max_new_tokens": 4096})))
    plan = planner(url, []).plan("draft a reply to each ticket", SUMMARY, [])
    assert plan.params["max_new_tokens"] == 512


def test_a_plan_that_copies_sample_rows_is_refused(gemini: tuple[FakeGemini, str]) -> None:
    fake, url = gemini
    row = "My card was charged twice for the same order"
    summary = DataSummary(filename="t.csv", format="csv", row_count=40, columns=["text"],
                          dtypes={"text": "object"}, sample_rows=[{"text": row}])
    reset(fake, ok_text(json.dumps({"operation": "python", "code": "RESULT = len(INPUT)",
                                    "python_inputs": [json.dumps(row)]})))
    with pytest.raises(PlanError, match="copies the data"):
        planner(url, []).plan("count the letters of each ticket", summary, [])
    reset(fake, ok_text(json.dumps({"operation": "subtasks", "subtasks": [
        {"kind": "generate", "prompt": f"Reply to: {row}"}]})))
    with pytest.raises(PlanError, match="copies the data"):
        planner(url, []).plan("reply to the first ticket", summary, [])
    reset(fake, ok_text(json.dumps({"operation": "subtasks", "subtasks": [
        {"kind": "classify", "text_column": "text", "row_start": 0, "row_stop": 1,
         "labels": ["billing", "bug"]}]})))
    plan = planner(url, []).plan("label the first ticket", summary, [])
    assert plan.subtasks[0].kind == "classify", "rows by index are fine"


def test_a_subtask_list_that_does_not_validate_is_refused(
        gemini: tuple[FakeGemini, str]) -> None:
    fake, url = gemini
    reset(fake, ok_text(json.dumps({"operation": "subtasks", "subtasks": [
        {"kind": "python", "description": "no code"}]})))
    with pytest.raises(PlanError, match="code"):
        planner(url, []).plan("do it", None, [])
    reset(fake, ok_text(json.dumps({"operation": "subtasks", "subtasks": []})))
    with pytest.raises(PlanError, match="needs an 'operation'"):
        planner(url, []).plan("do nothing", None, [])
    reset(fake, ok_text(json.dumps({"operation": "noop", "reduce": {"kind": "vote"}})))
    with pytest.raises(PlanError, match="not a valid plan"):
        planner(url, []).plan("vote", None, [])
