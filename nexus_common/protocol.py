"""Wire models of the worker protocol (JSON over HTTP), shared by worker and master.

This module must stay light: pydantic only. The master imports it, and importing it
must never pull in torch or transformers.

    Subtask  = {id, task_id, kind, payload, timeout_s}
    payload  = one of the *Payload models, picked by ``kind`` (a discriminated union)
    SubtaskResult = {id, status, output, error, metrics}

Limits live in the models themselves, so a worker rejects oversized work with a 422 that
names the field, before it spends any CPU on it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROTOCOL_VERSION = "1"

#: The original NADG bearer header (and ``Authorization: Bearer T``): accepted only by a worker
#: with ``NADG_COMPAT_V1=1``; requests are signed (:mod:`nexus_common.signing`).
def endpoint_url(base: str, path: str) -> str:
    """The URL of endpoint ``path`` (``/health``, ``/execute``) of the worker at ``base``:
    the one way every client joins a worker's URL and a path."""
    return base.rstrip("/") + "/" + path.lstrip("/")


AUTH_HEADER = "X-NADG-AUTH"

# Limits (per subtask). A shard larger than these is split by the master.
MAX_TEXTS = 512
MAX_TEXT_CHARS = 8_192
MAX_LABELS = 64
MAX_LABEL_CHARS = 512
MAX_CODE_CHARS = 100_000
MAX_PROMPT_TOKENS_NEW = 512
MAX_TIMEOUT_S = 3_600.0
MIN_TIMEOUT_S = 0.1
MAX_BATCH = 256
MAX_BLOB_CHARS = 64 * 1024 * 1024  # base64 characters of one weights blob

Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Label = Annotated[str, Field(min_length=1, max_length=MAX_LABEL_CHARS)]


class SubtaskKind(StrEnum):
    """What a subtask asks a worker to do."""

    PYTHON = "python"
    EMBED = "embed"
    CLASSIFY = "classify"
    GENERATE = "generate"
    TRAIN = "train"
    NOOP = "noop"


class ResultStatus(StrEnum):
    """How a subtask went on the worker."""

    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    REJECTED = "rejected"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoopPayload(_Payload):
    """Returns at once; ``sleep_ms`` lets diagnostics and benchmarks simulate work."""

    kind: Literal["noop"] = "noop"
    sleep_ms: float = Field(default=0.0, ge=0.0, le=600_000.0)
    echo: Any = None


class PythonPayload(_Payload):
    """Python code run in a sandboxed subprocess.

    The code sees the JSON value ``input`` as the global ``INPUT``; whatever it assigns to
    the global ``RESULT`` (JSON-serialisable) comes back as ``output.result``.
    """

    kind: Literal["python"] = "python"
    code: str = Field(min_length=1, max_length=MAX_CODE_CHARS)
    input: Any = None


class EmbedPayload(_Payload):
    """Sentence embeddings, one vector per text."""

    kind: Literal["embed"] = "embed"
    texts: list[Text] = Field(min_length=1, max_length=MAX_TEXTS)
    model: str | None = Field(default=None, description="HF id or path; None = embedded")
    normalize: bool = True


class HeadSpec(BaseModel):
    """A trained classification head, by reference and/or inline.

    ``ref`` names the head (a model id from the model registry); ``safetensors_b64`` is the
    head itself (tensors ``weight`` [C, D] and ``bias`` [C] over the embedding model's
    normalised sentence embeddings). A worker caches heads by ``ref``, so later subtasks
    may send the reference alone.
    """

    model_config = ConfigDict(extra="forbid")

    ref: str | None = Field(default=None, max_length=200)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    safetensors_b64: str | None = Field(default=None, max_length=MAX_BLOB_CHARS)
    labels: list[Label] = Field(default_factory=list, max_length=MAX_LABELS)
    model: str | None = Field(default=None, description="embedding model the head expects")

    @model_validator(mode="after")
    def _ref_or_inline(self) -> HeadSpec:
        if self.ref is None and self.safetensors_b64 is None:
            raise ValueError("a head needs a 'ref' or inline 'safetensors_b64'")
        return self


class ClassifyPayload(_Payload):
    """Labels for texts: zero-shot by similarity to label descriptions, or a trained head."""

    kind: Literal["classify"] = "classify"
    texts: list[Text] = Field(min_length=1, max_length=MAX_TEXTS)
    labels: list[Label] = Field(default_factory=list, max_length=MAX_LABELS)
    label_descriptions: dict[str, Annotated[str, Field(max_length=MAX_TEXT_CHARS)]] | None = None
    model: str | None = None
    head: HeadSpec | None = None

    @model_validator(mode="after")
    def _labels_or_head(self) -> ClassifyPayload:
        if self.head is None and len(self.labels) < 2:
            raise ValueError("zero-shot classify needs at least 2 labels (or a trained head)")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self


class GeneratePayload(_Payload):
    """Text generation with a causal language model, one completion per prompt."""

    kind: Literal["generate"] = "generate"
    prompts: list[Text] = Field(min_length=1, max_length=MAX_TEXTS)
    model: str | None = None
    max_new_tokens: int = Field(default=32, ge=1, le=MAX_PROMPT_TOKENS_NEW)
    temperature: float = Field(default=0.0, ge=0.0, le=5.0)
    seed: int = 0


class ModelFamily(StrEnum):
    """What a ``train`` subtask trains."""

    MLP = "mlp"  # a small MLP on numeric features
    TEXT_HEAD = "text_head"  # a linear head on frozen, normalised sentence embeddings
    LORA = "lora"  # the sentence encoder through LoRA adapters, plus a linear head


class WeightCodec(StrEnum):
    """How tensors travel: safetensors bytes of fp32, fp16, or int8 with per-tensor scale."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class ModelSpec(BaseModel):
    """The architecture of a trainable model; both sides build the same one from it."""

    model_config = ConfigDict(extra="forbid")

    family: ModelFamily
    num_classes: int = Field(ge=2, le=MAX_LABELS)
    labels: list[Label] = Field(default_factory=list, max_length=MAX_LABELS)
    input_dim: int | None = Field(default=None, ge=1, le=65_536, description="MLP inputs")
    hidden: list[Annotated[int, Field(ge=1, le=8_192)]] = Field(default_factory=list,
                                                                 max_length=8)
    encoder: str | None = Field(default=None, description="HF id or path; None = embedded")
    max_length: int = Field(default=128, ge=8, le=512, description="tokens per text")
    lora_r: int = Field(default=4, ge=1, le=64)
    lora_alpha: int = Field(default=8, ge=1, le=256)
    lora_targets: list[str] = Field(default_factory=lambda: ["query", "value"], max_length=16)

    @model_validator(mode="after")
    def _family_fields(self) -> ModelSpec:
        if self.family is ModelFamily.MLP and self.input_dim is None:
            raise ValueError("an 'mlp' spec needs 'input_dim'")
        if self.labels and len(self.labels) != self.num_classes:
            raise ValueError("'labels' must have exactly 'num_classes' entries")
        return self


class WeightsBlob(BaseModel):
    """A set of named tensors: safetensors bytes, base64, in one codec."""

    model_config = ConfigDict(extra="forbid")

    codec: WeightCodec = WeightCodec.FP32
    safetensors_b64: str = Field(max_length=MAX_BLOB_CHARS)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class TrainData(BaseModel):
    """One data shard: numeric ``features`` (MLP) or ``texts``, with integer ``labels``."""

    model_config = ConfigDict(extra="forbid")

    features: list[list[float]] | None = Field(default=None, max_length=100_000)
    texts: list[Text] | None = Field(default=None, max_length=100_000)
    labels: list[Annotated[int, Field(ge=0, lt=MAX_LABELS)]] = Field(min_length=1,
                                                                    max_length=100_000)

    @model_validator(mode="after")
    def _one_input(self) -> TrainData:
        inputs = self.features if self.features is not None else self.texts
        if (self.features is None) == (self.texts is None):
            raise ValueError("a shard needs exactly one of 'features' or 'texts'")
        if inputs is not None and len(inputs) != len(self.labels):
            raise ValueError(f"{len(inputs)} inputs but {len(self.labels)} labels")
        return self


class TrainHyper(BaseModel):
    """Hyperparameters of the local steps."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(default=0.05, gt=0.0, le=10.0)
    batch_size: int = Field(default=32, ge=1, le=4_096)
    local_steps: int | None = Field(default=None, ge=1, le=100_000,
                                    description="optimizer steps; wins over 'epochs'")
    epochs: float = Field(default=1.0, gt=0.0, le=1_000.0)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    seed: int = 0
    delta_codec: WeightCodec = WeightCodec.FP32


class TrainPayload(_Payload):
    """Local training steps on a data shard, from the given global weights.

    The worker answers ``output = {"delta": WeightsBlob, "num_samples", "loss", "steps",
    "train_ms"}`` where ``delta`` = local weights - global weights (trainable tensors only).
    ``weights`` may be omitted for a first round: the worker initialises from ``hyper.seed``.
    """

    kind: Literal["train"] = "train"
    spec: ModelSpec
    weights: WeightsBlob | None = None
    data: TrainData
    hyper: TrainHyper = Field(default_factory=TrainHyper)


Payload = Annotated[
    NoopPayload | PythonPayload | EmbedPayload | ClassifyPayload | GeneratePayload | TrainPayload,
    Field(discriminator="kind"),
]


class Subtask(BaseModel):
    """One unit of work sent to a worker."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    task_id: str = Field(min_length=1, max_length=200)
    kind: SubtaskKind
    payload: Payload
    timeout_s: float = Field(default=60.0, ge=MIN_TIMEOUT_S, le=MAX_TIMEOUT_S)

    @model_validator(mode="before")
    @classmethod
    def _kind_selects_payload(cls, data: Any) -> Any:
        """Let ``kind`` at the top pick the payload model (the payload may omit it)."""
        if isinstance(data, dict) and isinstance(data.get("payload"), dict):
            payload = data["payload"]
            kind = data.get("kind")
            if kind is not None and "kind" not in payload:
                data = {**data, "payload": {**payload, "kind": kind}}
            elif kind is None and "kind" in payload:
                data = {**data, "kind": payload["kind"]}
            elif kind is not None and payload.get("kind") != kind:
                raise ValueError(
                    f"kind {kind!r} does not match payload kind {payload.get('kind')!r}"
                )
        return data


class SubtaskResult(BaseModel):
    """What a worker answers for one subtask: how it went, and its output or error."""

    id: str
    status: ResultStatus
    output: dict[str, Any] | None = None
    error: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the subtask completed."""
        return self.status is ResultStatus.COMPLETED


class HealthResponse(BaseModel):
    """``GET /health``: cheap, unauthenticated, never loads a model."""

    status: Literal["ok", "degraded"]
    worker_id: str
    version: str
    uptime_s: float
    running: int
    capacity: int
    queued: int = 0
    kinds: list[str] = Field(default_factory=list,
                             description="subtask kinds this worker runs (empty: not said)")
    device: str | None = Field(default=None, description="where its models run: cpu, cuda")


class ErrorResponse(BaseModel):
    """The body of every 4xx/5xx answer: what was wrong and what to do."""

    error: str
    detail: Any = None
