"""``embed``: sentence embeddings (mean pooling + L2 norm) from a cached encoder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nexus_common.encoder import EncodingStopped, SentenceEncoder, default_model_path
from nexus_common.protocol import EmbedPayload, SubtaskKind
from worker_node.device import Placement
from worker_node.executors.base import ExecutionContext, SubtaskTimedOut
from worker_node.models import ModelCache

if TYPE_CHECKING:
    import torch


def load_encoder(models: ModelCache, name: str | None, default: str | None,
                 placement: Placement | None = None) -> SentenceEncoder:
    """The encoder ``name`` (else the configured default, else the embedded MiniLM),
    loaded onto the worker's device in its dtype."""
    path = name or default or default_model_path()
    where = placement or Placement()
    return models.get(f"encoder:{path}",
                      lambda: SentenceEncoder(path, device=where.device, dtype=where.dtype))


def encode_in_time(encoder: SentenceEncoder, texts: list[str], ctx: ExecutionContext, *,
                   batch_size: int, normalize: bool = True) -> torch.Tensor:
    """``encoder.encode`` that stops between batches once ``ctx`` is out of time."""
    try:
        return encoder.encode(texts, batch_size=batch_size, normalize=normalize,
                              should_stop=ctx.out_of_time)
    except EncodingStopped as exc:
        raise SubtaskTimedOut(f"subtask ran past its {ctx.timeout_s:g}s timeout ({exc})") from exc


class EmbedExecutor:
    """One vector per text, as lists of floats."""

    kind = SubtaskKind.EMBED

    def __init__(self, models: ModelCache, default_model: str | None, batch_size: int,
                 placement: Placement | None = None) -> None:
        self.models = models
        self.default_model = default_model
        self.batch_size = batch_size
        self.placement = placement or Placement()

    def run(self, payload: EmbedPayload, ctx: ExecutionContext) -> dict[str, Any]:
        """Return ``{"embeddings": [[...], ...], "dim", "model"}``."""
        encoder = load_encoder(self.models, payload.model, self.default_model,
                               self.placement)
        vectors = encode_in_time(encoder, payload.texts, ctx, batch_size=self.batch_size,
                                 normalize=payload.normalize)
        return {"embeddings": vectors.tolist(), "dim": encoder.dim, "model": encoder.name}
