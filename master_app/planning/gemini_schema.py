"""What Gemini answers: the response schema it is held to, and the checks on its answer.

:class:`GeminiPlan` is shallow (the API enforces it as ``response_schema``); it converts to
:class:`~master_app.planning.plan.Plan` fields, which pydantic then validates in full.
:func:`refuse_copied_rows` refuses a plan that carries the sample rows Gemini saw.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from master_app.intake import DataSummary
from master_app.planning.plan import Plan, PlanError
from nexus_common import protocol

INSTRUCTIONS = """You plan jobs for NEXUS Grid, a grid of worker machines.
Answer with ONE plan. Either a map over the data rows or inputs (`operation`):
- classify: label each row with one of `labels` (2 or more; zero-shot).
- embed: sentence embeddings of each row.
- generate: a completion per row; `prompt_template` holds {text} (the text column of
  the row) and/or {column} placeholders for other columns of the row.
- python: run `code` (Python; reads INPUT, assigns RESULT, may print) per row, or without
  data over `range_count` inputs 0..N-1, over `python_inputs` (JSON values), or over a
  numeric span: `span_start`, `span_stop`, `span_parts` (INPUT = [lo, hi), the span cut
  into span_parts even ranges; use about 8 parts for heavy loops).
- noop: diagnostics only.
Or `operation` = "subtasks" with a list of independent `subtasks`, each with `kind`
(python | generate | embed | classify | noop), a one-line `description`, and its fields:
python `code` (+ `input_json`), generate `prompt` (+ `max_new_tokens`), embed/classify
over data rows `row_start`..`row_stop`-1 of `text_column` (classify also `labels`).
Then `reduce` makes one answer from the results, in order: `concat` (join the text
outputs), `table` (the results table), `python` (`code` reads INPUT = the list of results
and assigns RESULT; e.g. RESULT = sum(INPUT)), or `synthesis` (`instruction`: Gemini
writes one answer from all the results).
Set `text_column` to the column holding the text for classify/embed/generate.
Never copy the user's data into the plan: refer to rows by index or map over them.
Explain the plan in one sentence."""


class GeminiStep(BaseModel):
    """One listed subtask, as Gemini fills it in."""

    kind: Literal["python", "generate", "embed", "classify", "noop"]
    description: str = ""
    code: str | None = None
    input_json: str | None = Field(default=None, description="python INPUT, JSON-encoded")
    prompt: str | None = None
    max_new_tokens: int | None = None
    labels: list[str] | None = None
    text_column: str | None = None
    row_start: int | None = None
    row_stop: int | None = None

    def to_step_dict(self) -> dict[str, Any]:
        """The equivalent :class:`~master_app.planning.steps.PlannedSubtask` fields."""
        step: dict[str, Any] = {"kind": self.kind, "description": self.description[:300]}
        if self.kind == "python":
            step["code"] = self.code or ""
            if self.input_json is not None:
                step["input"] = _json_or_str(self.input_json)
        elif self.kind == "generate":
            step["prompt"] = self.prompt or ""
            if self.max_new_tokens and self.max_new_tokens > 0:
                step["max_new_tokens"] = min(self.max_new_tokens, protocol.MAX_PROMPT_TOKENS_NEW)
        elif self.kind in ("embed", "classify"):
            step["text_column"] = self.text_column
            if self.row_start is not None or self.row_stop is not None:
                step["rows"] = {"start": self.row_start or 0, "stop": self.row_stop or 0}
            if self.kind == "classify":
                step["labels"] = self.labels or []
        return step


class GeminiReduce(BaseModel):
    """The reduce step, as Gemini fills it in."""

    kind: Literal["concat", "table", "python", "synthesis"]
    code: str | None = None
    instruction: str | None = None

    def to_reduce_dict(self) -> dict[str, Any]:
        """The equivalent :class:`~master_app.planning.steps.Reduce` fields."""
        if self.kind == "python":
            return {"kind": "python", "code": self.code or ""}
        if self.kind == "synthesis":
            return {"kind": "synthesis", "instruction": self.instruction or
                    "Merge the results into one answer to the user's command."}
        return {"kind": self.kind}


class GeminiPlan(BaseModel):
    """The response schema Gemini fills in (shallow, so the API can enforce it)."""

    operation: Literal["classify", "embed", "generate", "python", "noop", "subtasks"] = Field(
        description="a map over rows/inputs, or 'subtasks' for a list of subtasks")
    text_column: str | None = None
    labels: list[str] | None = None
    prompt_template: str | None = None
    max_new_tokens: int | None = None
    code: str | None = None
    range_count: int | None = None
    python_inputs: list[str] | None = Field(
        default=None, description="JSON-encoded input values, one per python subtask")
    span_start: int | None = None
    span_stop: int | None = None
    span_parts: int | None = None
    shard_size: int | None = None
    subtasks: list[GeminiStep] | None = None
    reduce: GeminiReduce | None = None
    explanation: str = ""

    def to_plan_dict(self) -> dict[str, Any]:
        """The equivalent :class:`Plan` fields."""
        op = self.operation
        plan: dict[str, Any] = {"explanation": self.explanation[:2_000]}
        if self.reduce is not None:
            plan["reduce"] = self.reduce.to_reduce_dict()
        if op == "subtasks":
            plan["subtasks"] = [s.to_step_dict() for s in self.subtasks or []]
            return plan
        params: dict[str, Any] = {}
        if op == "classify":
            params["labels"] = self.labels or []
        elif op == "generate":
            params["prompt_template"] = self.prompt_template or "{text}"
            if self.max_new_tokens and self.max_new_tokens > 0:
                params["max_new_tokens"] = min(self.max_new_tokens,
                                               protocol.MAX_PROMPT_TOKENS_NEW)
        elif op == "python":
            params["code"] = self.code or ""
            if self.range_count is not None:
                params["range"] = self.range_count
            if self.python_inputs is not None:
                params["inputs"] = [_json_or_str(v) for v in self.python_inputs]
            if self.span_stop is not None:
                params["span"] = {"start": self.span_start or 0, "stop": self.span_stop,
                                  "parts": self.span_parts or 1}
        plan.update(operation=op, params=params)
        if self.text_column and op in ("classify", "embed", "generate"):
            plan["text_column"] = self.text_column
        # Sizes are hints the schema cannot bound: clamp them to what a subtask may carry
        # (as sharding does) rather than reject a good plan over a big number.
        if self.shard_size and self.shard_size > 0:
            plan["shard_size"] = min(self.shard_size, protocol.MAX_TEXTS)
        return plan


def _json_or_str(value: str) -> Any:
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


#: A sample value at least this long found verbatim in a plan counts as copied data.
MIN_COPIED_CHARS = 24


def refuse_copied_rows(plan: Plan, summary: DataSummary | None) -> None:
    """Raise :class:`PlanError` when the plan carries text of the sample rows Gemini saw.

    Plans refer to rows (a map over them, or row slices) and sharding fills the data in;
    a plan that copies rows would run on a stale, partial copy of the data (and is what a
    prompt injection in a row would ask for).
    """
    if summary is None:
        return
    body = plan.model_dump_json()
    for row in summary.sample_rows:
        for column, value in row.items():
            text = str(value)
            if len(text) >= MIN_COPIED_CHARS and (text in body or json.dumps(text)[1:-1]
                                                   in body):
                raise PlanError(f"Gemini's plan copies the data (column {column!r} of a "
                                "sample row) instead of referring to the rows; plan again "
                                "or use --planner local.")
