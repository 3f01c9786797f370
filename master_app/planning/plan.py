"""The plan: what to run, how to shard it, and how the results make one answer.

A plan is either a **map** (``operation`` + ``params``: one operation over the data rows,
a python ``range``/``span``/``inputs``, or ``count`` no-ops) or a list of independent
**subtasks** (``subtasks``: python code, a generate prompt, embed/classify over a slice of
the rows, ...), never both; then a **reduce** step makes one answer (``concat``, ``table``,
a ``python`` reducer run on a worker, or a Gemini ``synthesis``).

A :class:`Plan` is validated twice: by pydantic when built (known kinds, well-formed
parameters, limits on counts and sizes) and by :meth:`Plan.check` against the data before
use. It round-trips through ``model_dump_json`` / ``model_validate_json`` (plan files).
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from master_app.intake import DataSummary
from master_app.planning.steps import (
    MAX_PLAN_SUBTASKS,
    AnyReduce,
    AnyStep,
    ClassifyStep,
    ConcatReduce,
    EmbedStep,
    PlannedSubtask,
    Reduce,
    TableReduce,
)
from nexus_common import protocol
from nexus_common.protocol import SubtaskKind

#: The most independent subtasks a plan without data may ask for.
MAX_PLAN_ITEMS = 10_000
#: The JSON size of a python map's ``inputs`` (parameters the planner wrote, not data).
MAX_INPUTS_CHARS = 1_000_000
#: The JSON size of a whole plan.
MAX_PLAN_CHARS = 4_000_000
#: The largest number a python ``span`` may reach.
MAX_SPAN = 10**15


class PlanError(ValueError):
    """A plan cannot run: the message says which field is wrong and why."""


class Combine(StrEnum):
    """How the results of the subtasks come together."""

    ROWS = "rows"  # one output per input row, in input order
    LABEL_COUNTS = "label_counts"  # classify: a label per row plus counts
    MATRIX = "matrix"  # embed: one matrix, saved as .npy
    PER_SUBTASK = "per_subtask"  # python/noop: one output per subtask


_DEFAULT_COMBINE = {
    SubtaskKind.CLASSIFY: Combine.LABEL_COUNTS,
    SubtaskKind.EMBED: Combine.MATRIX,
    SubtaskKind.GENERATE: Combine.ROWS,
    SubtaskKind.PYTHON: Combine.PER_SUBTASK,
    SubtaskKind.NOOP: Combine.PER_SUBTASK,
}
_NEEDS_TEXT = (SubtaskKind.CLASSIFY, SubtaskKind.EMBED, SubtaskKind.GENERATE)


class Plan(BaseModel):
    """A validated plan: a map or a list of subtasks, then a reduce step.

    ``params`` of a map, per operation:

    - ``embed``: ``model``, ``normalize``
    - ``classify``: ``labels`` (2+), ``label_descriptions``, ``model``
    - ``generate``: ``prompt_template`` (``{text}`` = the row's text column, ``{col}`` =
      any other column of the row), ``max_new_tokens``,
      ``temperature``, ``model``
    - ``python``: ``code`` (reads ``INPUT``, sets ``RESULT``); per data row, or without
      data one of ``range`` (inputs 0..N-1), ``span`` (``{start, stop, parts}``: INPUT is
      ``[lo, hi]``, the span cut into ``parts`` even ranges) or ``inputs`` (JSON values)
    - ``noop``: ``count``, ``sleep_ms``
    """

    model_config = ConfigDict(extra="forbid")

    operation: SubtaskKind | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    text_column: str | None = Field(default=None, max_length=200)
    shard_count: int | None = Field(default=None, ge=1, le=MAX_PLAN_ITEMS)
    shard_size: int | None = Field(default=None, ge=1, le=protocol.MAX_TEXTS)
    combine: Combine | None = None
    subtasks: list[PlannedSubtask] = Field(default_factory=list, max_length=MAX_PLAN_SUBTASKS)
    reduce: Reduce | None = None
    explanation: str = Field(default="", max_length=2_000)

    @model_validator(mode="after")
    def _small_enough(self) -> Plan:
        size = len(self.model_dump_json())
        if size > MAX_PLAN_CHARS:
            raise ValueError(f"the plan is {size:,} characters of JSON; at most "
                             f"{MAX_PLAN_CHARS:,} (a plan names work; data goes in a file)")
        return self

    @model_validator(mode="after")
    def _valid_params(self) -> Plan:
        if self.operation is None:
            if not self.subtasks:
                raise ValueError("a plan needs an 'operation' (a map over the data or inputs) "
                                 "or a list of 'subtasks'")
            if self.params:
                raise ValueError("'params' belong to an 'operation'; a list of subtasks "
                                 "carries its parameters in each subtask")
            self.combine = Combine.PER_SUBTASK
            if self.reduce is None:
                self.reduce = ConcatReduce()
            return self
        if self.subtasks:
            raise ValueError("give an 'operation' (a map) or a list of 'subtasks', not both")
        if self.operation is SubtaskKind.TRAIN:
            raise ValueError("training is not planned here; use `python -m master_app train`")
        if self.combine is None:
            self.combine = _DEFAULT_COMBINE[self.operation]
        if self.reduce is None:
            self.reduce = TableReduce()
        try:
            self.sample_payload()
        except ValidationError as exc:
            errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                               for e in exc.errors())
            raise ValueError(f"invalid params for {self.operation.value}: {errors}") from exc
        if self.operation is SubtaskKind.GENERATE and not self.template_fields:
            raise ValueError("generate needs a prompt_template containing {text} (the row) "
                             "or {column} placeholders")
        if self.operation is SubtaskKind.PYTHON:
            _check_python_params(self.params)
        if self.operation is SubtaskKind.NOOP:
            count = self.params.get("count", 1)
            if not isinstance(count, int) or not 1 <= count <= MAX_PLAN_ITEMS:
                raise ValueError(f"noop 'count' must be an int in 1..{MAX_PLAN_ITEMS}")
        return self

    @property
    def is_map(self) -> bool:
        """True for a map (one operation over rows or inputs), False for a subtask list."""
        return self.operation is not None

    @property
    def steps(self) -> list[AnyStep]:
        """The explicit subtasks (empty for a map)."""
        return list(self.subtasks)

    @property
    def reducer(self) -> AnyReduce:
        """The reduce step (always set once validated)."""
        return self.reduce if self.reduce is not None else TableReduce()

    @property
    def prompt_template(self) -> str:
        """The generate prompt template (``{text}`` stands for the row)."""
        return str(self.params.get("prompt_template", "{text}"))

    @property
    def template_fields(self) -> list[str]:
        """The placeholders of the generate template (``text`` and column names)."""
        return list(dict.fromkeys(_FIELD.findall(self.prompt_template)))

    @property
    def needs_data(self) -> bool:
        """True when the plan works on the rows of a dataset."""
        if self.operation is None:
            return any(isinstance(s, EmbedStep | ClassifyStep) and s.rows is not None
                       for s in self.subtasks)
        return self.operation in _NEEDS_TEXT

    @property
    def summary_line(self) -> str:
        """What the plan does, in a few words (its explanation when it has one)."""
        if self.explanation:
            return self.explanation
        if self.operation is not None:
            return f"{self.operation.value} map, reduce: {self.reducer.kind}"
        return f"{len(self.subtasks)} subtasks, reduce: {self.reducer.kind}"

    def sample_payload(self, texts: list[str] | None = None) -> protocol.Payload:
        """A map payload for ``texts`` (a dummy text by default); raises ValidationError."""
        texts = texts or ["x"]
        p = {k: v for k, v in self.params.items()}
        kind = self.operation
        model: protocol.Payload
        if kind is SubtaskKind.EMBED:
            model = protocol.EmbedPayload(texts=texts, **_pick(p, "model", "normalize"))
        elif kind is SubtaskKind.CLASSIFY:
            model = protocol.ClassifyPayload(
                texts=texts, **_pick(p, "labels", "label_descriptions", "model", "head"))
        elif kind is SubtaskKind.GENERATE:
            template = str(p.get("prompt_template", "{text}"))
            model = protocol.GeneratePayload(
                prompts=[render_prompt(template, t) for t in texts],
                **_pick(p, "model", "max_new_tokens", "temperature", "seed"))
        elif kind is SubtaskKind.PYTHON:
            model = protocol.PythonPayload(code=p.get("code", ""), input=None)
        elif kind is SubtaskKind.NOOP:
            model = protocol.NoopPayload(**_pick(p, "sleep_ms", "echo"))
        else:
            raise PlanError("a list of subtasks has no single map payload")
        return model

    def check(self, summary: DataSummary | None) -> None:
        """Check the plan against the data; raises :class:`PlanError` with the reason."""
        if self.operation is None:
            self._check_steps(summary)
            return
        if self.needs_data:
            if summary is None:
                raise PlanError(f"{self.operation.value} works on data rows; give a data file "
                                "(--data FILE or an upload).")
            if self.text_column is None:
                raise PlanError(f"{self.operation.value} needs a text column; the data has "
                                f"{summary.columns}.")
            if self.text_column not in summary.columns:
                raise PlanError(f"the plan names column {self.text_column!r}, but the data has "
                                f"only {summary.columns}.")
            if self.operation is SubtaskKind.GENERATE:
                unknown = [f for f in self.template_fields
                           if f != "text" and f not in summary.columns]
                if unknown:
                    raise PlanError(f"the prompt template names {unknown}, but the data has "
                                    f"only the columns {summary.columns} (and {{text}}).")
        if self.operation is SubtaskKind.PYTHON and summary is None:
            if not any(k in self.params for k in ("range", "inputs", "span")):
                self.params["range"] = 1

    def _check_steps(self, summary: DataSummary | None) -> None:
        for i, step in enumerate(self.subtasks):
            if not isinstance(step, EmbedStep | ClassifyStep) or step.rows is None:
                continue
            where = f"subtask {i} ({step.kind})"
            if summary is None:
                raise PlanError(f"{where} works on data rows {step.rows.start}.."
                                f"{step.rows.stop - 1}; give a data file (--data FILE or an "
                                "upload).")
            column = step.text_column
            if column is None or column not in summary.columns:
                raise PlanError(f"{where} names column {column!r}, but the data has only "
                                f"{summary.columns}.")
            if step.rows.stop > summary.row_count:
                raise PlanError(f"{where} asks for rows up to {step.rows.stop - 1}, but the "
                                f"data has {summary.row_count} rows.")


_FIELD = re.compile(r"\{([A-Za-z_][\w .-]{0,63})\}")


def render_prompt(template: str, text: str, row: dict[str, Any] | None = None) -> str:
    """The prompt for one row: ``{text}`` is ``text``, ``{col}`` the row's ``col``.

    Plain substitution (never ``str.format``: a row cannot reach attributes). ``text`` is
    cut so that the prompt fits the protocol's :data:`~nexus_common.protocol.MAX_TEXT_CHARS`.
    """
    values = {k: "" if v is None else str(v) for k, v in (row or {}).items()}
    fixed = _FIELD.sub(lambda m: "" if m.group(1) == "text"
                       else values.get(m.group(1), m.group(0)), template)
    room = max(0, protocol.MAX_TEXT_CHARS - len(fixed))
    values["text"] = text[:room]
    prompt = _FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    return prompt[: protocol.MAX_TEXT_CHARS]


def _check_python_params(params: dict[str, Any]) -> None:
    given = [k for k in ("range", "inputs", "span") if k in params]
    if len(given) > 1:
        raise ValueError(f"python takes one of 'range', 'span' or 'inputs', not {given}")
    n = params.get("range")
    if n is not None and (not isinstance(n, int) or not 1 <= n <= MAX_PLAN_ITEMS):
        raise ValueError(f"python 'range' must be an int in 1..{MAX_PLAN_ITEMS}")
    inputs = params.get("inputs")
    if inputs is not None:
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= MAX_PLAN_ITEMS:
            raise ValueError(f"python 'inputs' must be a list of 1..{MAX_PLAN_ITEMS} values")
        size = len(json.dumps(inputs, default=str))
        if size > MAX_INPUTS_CHARS:
            raise ValueError(f"python 'inputs' are {size} characters of JSON; at most "
                             f"{MAX_INPUTS_CHARS} (give data as a file, not in the plan)")
    if "span" in params:
        span_parts(params["span"])


def span_parts(span: Any) -> list[list[int]]:
    """``{start, stop, parts}`` cut into ``parts`` even ``[lo, hi)`` ranges, in order.

    Raises ValueError naming what is wrong.
    """
    if not isinstance(span, dict) or set(span) - {"start", "stop", "parts"}:
        raise ValueError("python 'span' must be {\"start\": int, \"stop\": int, "
                         "\"parts\": int}")
    values = [span.get("start", 0), span.get("stop"), span.get("parts", 1)]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError("python 'span' start, stop and parts must be integers")
    start, stop, parts = (int(v) for v in values)
    if not 0 <= start < stop <= MAX_SPAN:
        raise ValueError(f"python 'span' needs 0 <= start < stop <= {MAX_SPAN}")
    if not 1 <= parts <= min(MAX_PLAN_ITEMS, stop - start):
        raise ValueError(f"python 'span' parts must be in 1..{min(MAX_PLAN_ITEMS, stop - start)}")
    cuts = [start + (stop - start) * i // parts for i in range(parts + 1)]
    return [[cuts[i], cuts[i + 1]] for i in range(parts)]


def _pick(params: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: params[k] for k in keys if k in params and params[k] is not None}


def parse_plan(data: dict[str, Any]) -> Plan:
    """Build a :class:`Plan` from a dict; :class:`PlanError` lists what is wrong."""
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'plan'}: {e['msg']}"
                           for e in exc.errors())
        raise PlanError(f"the plan is not valid: {errors}") from exc


def parse_plan_json(text: str | bytes) -> Plan:
    """A :class:`Plan` from its JSON (a plan file); :class:`PlanError` lists what is wrong."""
    try:
        return Plan.model_validate_json(text)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'plan'}: {e['msg']}"
                           for e in exc.errors()[:5])
        raise PlanError(f"the plan is not valid: {errors}") from exc
