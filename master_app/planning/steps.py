"""The parts of a plan: independent subtasks (by kind) and the reduce step (by kind).

Both are discriminated unions on ``kind``, validated by pydantic with limits on every size,
so a plan that would not fit the wire protocol is refused before anything runs::

    PlannedSubtask = PythonStep | GenerateStep | EmbedStep | ClassifyStep | NoopStep
    Reduce         = ConcatReduce | TableReduce | PythonReduce | SynthesisReduce

A step never holds the user's data: ``embed`` / ``classify`` steps name a slice of the data
rows (``rows``), and deterministic sharding code fills in the texts.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nexus_common import protocol

#: The most explicit subtasks one plan may list.
MAX_PLAN_SUBTASKS = 256
#: A one-line description of a step.
MAX_DESCRIPTION_CHARS = 300
#: The JSON size of one python step's ``input`` (inputs are parameters, not data).
MAX_STEP_INPUT_CHARS = 64 * 1024
#: A synthesis instruction.
MAX_INSTRUCTION_CHARS = 4_000
#: The synthesis prompt budget, in tokens (Gemini 2.5 takes about 1M).
MAX_SYNTHESIS_TOKENS = 1_000_000


class ReduceKind(StrEnum):
    """How the results of a plan make one answer."""

    CONCAT = "concat"  # the text outputs joined in order
    TABLE = "table"  # the results table (one row per input row or subtask)
    PYTHON = "python"  # a python reducer, run on a worker in its sandbox
    SYNTHESIS = "synthesis"  # Gemini writes one answer from the results


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Step(_Strict):
    description: str = Field(default="", max_length=MAX_DESCRIPTION_CHARS,
                             description="one line: what this subtask does")


class RowSlice(_Strict):
    """Data rows ``start`` .. ``stop - 1`` (what a step works on, never the rows' text)."""

    start: int = Field(ge=0)
    stop: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> RowSlice:
        if self.stop <= self.start:
            raise ValueError(f"rows: stop ({self.stop}) must be above start ({self.start})")
        if self.stop - self.start > protocol.MAX_TEXTS:
            raise ValueError(f"rows: at most {protocol.MAX_TEXTS} rows per subtask")
        return self


class PythonStep(_Step):
    """Python code (sets ``RESULT``, may print) run in a worker's sandbox with ``INPUT``."""

    kind: Literal["python"] = "python"
    code: str = Field(min_length=1, max_length=protocol.MAX_CODE_CHARS)
    input: Any = None

    @field_validator("input")
    @classmethod
    def _small_input(cls, value: Any) -> Any:
        size = len(json.dumps(value, default=str))
        if size > MAX_STEP_INPUT_CHARS:
            raise ValueError(f"input is {size} characters of JSON; at most "
                             f"{MAX_STEP_INPUT_CHARS} (inputs are parameters, not data)")
        return value

    def payload(self, texts: list[str] | None = None) -> protocol.PythonPayload:
        """The wire payload."""
        return protocol.PythonPayload(code=self.code, input=self.input)


class GenerateStep(_Step):
    """One completion of one prompt the planner wrote."""

    kind: Literal["generate"] = "generate"
    prompt: str = Field(min_length=1, max_length=protocol.MAX_TEXT_CHARS)
    max_new_tokens: int = Field(default=256, ge=1, le=protocol.MAX_PROMPT_TOKENS_NEW)
    temperature: float = Field(default=0.0, ge=0.0, le=5.0)
    model: str | None = Field(default=None, max_length=200)

    def payload(self, texts: list[str] | None = None) -> protocol.GeneratePayload:
        """The wire payload."""
        return protocol.GeneratePayload(prompts=[self.prompt], model=self.model,
                                        max_new_tokens=self.max_new_tokens,
                                        temperature=self.temperature)


class _TextStep(_Step):
    """A step over texts: a slice of the data rows, or texts written in the command."""

    rows: RowSlice | None = None
    text_column: str | None = Field(default=None, max_length=200)
    texts: list[protocol.Text] | None = Field(default=None, min_length=1,
                                              max_length=protocol.MAX_TEXTS)
    model: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _one_source(self) -> _TextStep:
        if (self.rows is None) == (self.texts is None):
            raise ValueError("give exactly one of 'rows' (a slice of the data) or 'texts'")
        return self


class EmbedStep(_TextStep):
    """Sentence embeddings of a slice of the data (or of a few given texts)."""

    kind: Literal["embed"] = "embed"
    normalize: bool = True

    def payload(self, texts: list[str] | None = None) -> protocol.EmbedPayload:
        """The wire payload for ``texts`` (the slice's rows, filled in by sharding)."""
        return protocol.EmbedPayload(texts=texts or self.texts or [], model=self.model,
                                     normalize=self.normalize)


class ClassifyStep(_TextStep):
    """Zero-shot labels for a slice of the data (or a few given texts)."""

    kind: Literal["classify"] = "classify"
    labels: list[protocol.Label] = Field(min_length=2, max_length=protocol.MAX_LABELS)
    label_descriptions: dict[str, str] | None = None

    def payload(self, texts: list[str] | None = None) -> protocol.ClassifyPayload:
        """The wire payload for ``texts`` (the slice's rows, filled in by sharding)."""
        return protocol.ClassifyPayload(texts=texts or self.texts or [], labels=self.labels,
                                        label_descriptions=self.label_descriptions,
                                        model=self.model)


class NoopStep(_Step):
    """A diagnostic subtask."""

    kind: Literal["noop"] = "noop"
    sleep_ms: float = Field(default=0.0, ge=0.0, le=600_000.0)
    echo: Any = None

    def payload(self, texts: list[str] | None = None) -> protocol.NoopPayload:
        """The wire payload."""
        return protocol.NoopPayload(sleep_ms=self.sleep_ms, echo=self.echo)


PlannedSubtask = Annotated[PythonStep | GenerateStep | EmbedStep | ClassifyStep | NoopStep,
                           Field(discriminator="kind")]


class ConcatReduce(_Strict):
    """The text of every result joined in order (a python step's output or stdout, a
    completion, a label)."""

    kind: Literal["concat"] = "concat"
    separator: str = Field(default="\n\n", max_length=100)


class TableReduce(_Strict):
    """The results table itself is the answer."""

    kind: Literal["table"] = "table"


class PythonReduce(_Strict):
    """A reducer run as one more python subtask on a worker, after the map.

    ``INPUT`` is the list of results in order (a python step's ``RESULT``, else its stdout;
    a completion; a label); the reducer sets ``RESULT``. The master never runs it itself.
    """

    kind: Literal["python"] = "python"
    code: str = Field(min_length=1, max_length=protocol.MAX_CODE_CHARS)
    description: str = Field(default="", max_length=MAX_DESCRIPTION_CHARS)


class SynthesisReduce(_Strict):
    """Gemini writes one answer from the results (truncated to fit ``max_input_tokens``)."""

    kind: Literal["synthesis"] = "synthesis"
    instruction: str = Field(min_length=1, max_length=MAX_INSTRUCTION_CHARS)
    max_input_tokens: int = Field(default=32_000, ge=500, le=MAX_SYNTHESIS_TOKENS)


Reduce = Annotated[ConcatReduce | TableReduce | PythonReduce | SynthesisReduce,
                   Field(discriminator="kind")]

AnyStep = PythonStep | GenerateStep | EmbedStep | ClassifyStep | NoopStep
AnyReduce = ConcatReduce | TableReduce | PythonReduce | SynthesisReduce
