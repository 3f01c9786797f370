"""The plan: what to run, with which parameters, how to shard and how to combine.

A :class:`Plan` is validated twice: by pydantic when built (known kind, well-formed
parameters) and by :meth:`Plan.check` against the data and the grid before use.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from master_app.intake import DataSummary
from worker_node import protocol
from worker_node.protocol import SubtaskKind

#: The most independent subtasks a plan without data may ask for.
MAX_PLAN_ITEMS = 10_000


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
    """A validated plan.

    ``params`` per operation:

    - ``embed``: ``model``, ``normalize``
    - ``classify``: ``labels`` (2+), ``label_descriptions``, ``model``
    - ``generate``: ``prompt_template`` (with ``{text}``), ``max_new_tokens``,
      ``temperature``, ``model``
    - ``python``: ``code`` (reads ``INPUT``, sets ``RESULT``); without data either
      ``range`` (inputs 0..N-1) or ``inputs`` (a list of JSON values)
    - ``noop``: ``count``, ``sleep_ms``
    """

    model_config = ConfigDict(extra="forbid")

    operation: SubtaskKind
    params: dict[str, Any] = Field(default_factory=dict)
    text_column: str | None = None
    shard_count: int | None = Field(default=None, ge=1)
    shard_size: int | None = Field(default=None, ge=1, le=protocol.MAX_TEXTS)
    combine: Combine | None = None
    explanation: str = ""

    @model_validator(mode="after")
    def _valid_params(self) -> Plan:
        if self.operation is SubtaskKind.TRAIN:
            raise ValueError("training is not planned here; use `python -m master_app train`")
        if self.combine is None:
            self.combine = _DEFAULT_COMBINE[self.operation]
        try:
            self.sample_payload()
        except ValidationError as exc:
            errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                               for e in exc.errors())
            raise ValueError(f"invalid params for {self.operation.value}: {errors}") from exc
        if self.operation is SubtaskKind.GENERATE and "{text}" not in self.prompt_template:
            raise ValueError("generate needs a prompt_template containing {text}")
        if self.operation is SubtaskKind.PYTHON:
            if "range" in self.params and "inputs" in self.params:
                raise ValueError("python takes 'range' or 'inputs', not both")
            n = self.params.get("range")
            if n is not None and (not isinstance(n, int) or not 1 <= n <= MAX_PLAN_ITEMS):
                raise ValueError(f"python 'range' must be an int in 1..{MAX_PLAN_ITEMS}")
            inputs = self.params.get("inputs")
            if inputs is not None and (not isinstance(inputs, list)
                                       or not 1 <= len(inputs) <= MAX_PLAN_ITEMS):
                raise ValueError(f"python 'inputs' must be a list of 1..{MAX_PLAN_ITEMS} values")
        if self.operation is SubtaskKind.NOOP:
            count = self.params.get("count", 1)
            if not isinstance(count, int) or not 1 <= count <= MAX_PLAN_ITEMS:
                raise ValueError(f"noop 'count' must be an int in 1..{MAX_PLAN_ITEMS}")
        return self

    @property
    def prompt_template(self) -> str:
        """The generate prompt template (``{text}`` stands for the row)."""
        return str(self.params.get("prompt_template", "{text}"))

    @property
    def needs_data(self) -> bool:
        """True when the operation works on the rows of a dataset."""
        return self.operation in _NEEDS_TEXT

    def sample_payload(self, texts: list[str] | None = None) -> protocol.Payload:
        """A payload for ``texts`` (a dummy text by default); raises ValidationError."""
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
                prompts=[template.replace("{text}", t) for t in texts],
                **_pick(p, "model", "max_new_tokens", "temperature", "seed"))
        elif kind is SubtaskKind.PYTHON:
            model = protocol.PythonPayload(code=p.get("code", ""), input=None)
        else:
            model = protocol.NoopPayload(**_pick(p, "sleep_ms", "echo"))
        return model

    def check(self, summary: DataSummary | None) -> None:
        """Check the plan against the data; raises :class:`PlanError` with the reason."""
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
        if self.operation is SubtaskKind.PYTHON and summary is not None:
            return
        if self.operation is SubtaskKind.PYTHON and summary is None:
            if "range" not in self.params and "inputs" not in self.params:
                self.params["range"] = 1


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
