"""Pure display helpers: ages, durations, URL validation, table rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from database.models import CircuitState, TaskRecord, TaskStatus, WorkerNode, WorkerStatus
from master_app.ui.formatting import (
    age,
    duration,
    error_markdown,
    humanise_error,
    short_id,
    status_style,
    task_rows,
    validate_worker_url,
    worker_rows,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(seconds=5), "5s ago"), (timedelta(minutes=3), "3m ago"),
    (timedelta(hours=2), "2.0h ago"), (timedelta(days=3), "3.0d ago"),
])
def test_age_reads_at_a_glance(delta: timedelta, text: str) -> None:
    assert age(NOW - delta, NOW) == text


def test_age_of_a_worker_never_pinged() -> None:
    assert age(None, NOW) == "never"


@pytest.mark.parametrize(("url", "clean"), [
    ("http://127.0.0.1:7860/", "http://127.0.0.1:7860"),
    ("  https://me-nadg.hf.space  ", "https://me-nadg.hf.space"),
])
def test_good_worker_urls_are_normalised(url: str, clean: str) -> None:
    assert validate_worker_url(url) == clean


@pytest.mark.parametrize(("url", "complaint"), [
    ("", "enter the worker's URL"), ("127.0.0.1:7860", "not an http(s) URL"),
    ("http://", "no host name"), ("http://host:99999", "invalid port"),
    ("http://host/?a=1", "query or fragment"),
])
def test_bad_worker_urls_say_what_is_wrong(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        validate_worker_url(url)


def test_rows_carry_status_latency_and_circuit() -> None:
    w = WorkerNode(id=1, vm_url="http://a", status=WorkerStatus.OFFLINE, name="a",
                   last_ping=NOW - timedelta(seconds=30), last_latency_ms=12.345,
                   circuit_state=CircuitState.OPEN, total_tasks=7, max_concurrency=3)
    [row] = worker_rows([w], NOW)
    assert row["status"] == "offline" and row["age"] == "30s ago"
    assert row["latency ms"] == 12.3 and row["circuit"] == "open"
    assert row["tasks done"] == 7 and row["capacity"] == 3
    assert "background-color" in status_style("offline") and status_style("closed") == ""


def test_task_rows_show_duration_and_counts() -> None:
    t = TaskRecord(id="t", command="x" * 100, plan={}, status=TaskStatus.FAILED,
                   created_at=NOW, updated_at=NOW, started_at=NOW,
                   finished_at=NOW + timedelta(seconds=2.5), subtask_count=4,
                   result_summary={"completed": 3, "failed": 1})
    [row] = task_rows([t])
    assert row["duration"] == "2.5s" and duration(t) == "2.5s"
    assert (row["subtasks"], row["completed"], row["failed"]) == (4, 3, 1)
    assert row["command"].endswith("...") and len(row["command"]) == 80


def test_task_rows_show_short_ids() -> None:
    t = TaskRecord(id="0123456789abcdef0123456789abcdef", command="x", plan={},
                   status=TaskStatus.COMPLETED, created_at=NOW, updated_at=NOW)
    [row] = task_rows([t])
    assert row["id"] == "01234567" == short_id(t.id)


@pytest.mark.parametrize(("raw", "plain"), [
    ("the plan is not valid: plan: Value error, invalid params for classify: : Value error, "
     "zero-shot classify needs at least 2 labels (or a trained head)",
     "The plan is not valid: the parameters of classify: zero-shot classify needs at least 2 "
     "labels (or a trained head)"),
    ("classify works on data rows; give a data file (--data FILE or an upload).",
     "Classify works on data rows; upload a data file."),
    ("the plan is not valid: subtasks.0.python.code: Field required",
     "The plan is not valid: subtask 1, code: is missing"),
    ("the plan is not valid: plan: Value error, invalid params for classify: labels: Input "
     "should be a valid list",
     'The plan is not valid: the parameters of classify: labels: should be a list, e.g. '
     '["a", "b"]'),
])
def test_errors_are_said_without_internal_jargon(raw: str, plain: str) -> None:
    assert humanise_error(raw) == plain
    assert "Value error" not in plain and "--data" not in plain


def test_a_multi_line_error_keeps_its_line_breaks() -> None:
    from master_app.planning import LocalPlanner
    from master_app.planning.plan import PlanError

    with pytest.raises(PlanError) as caught:
        LocalPlanner().plan("make me a sandwich", None, [])
    text = error_markdown(f"No plan: {caught.value}")
    first, block = text.split("\n\n```text\n", 1)
    assert first.startswith("No plan: I did not understand 'make me a sandwich'")
    assert block.endswith("\n```")
    lines = block.splitlines()
    assert lines[0] == "I understand these commands:"
    assert any(line.startswith("  classify as A / B / C") for line in lines)  # aligned
