"""``embed``: sentence embeddings (mean pooling + L2 norm) from a cached encoder."""

from __future__ import annotations

from typing import Any

from worker_node.encoder import SentenceEncoder, default_model_path
from worker_node.executors.base import ExecutionContext
from worker_node.models import ModelCache
from worker_node.protocol import EmbedPayload, SubtaskKind


def load_encoder(models: ModelCache, name: str | None, default: str | None) -> SentenceEncoder:
    """The encoder ``name`` (else the configured default, else the embedded MiniLM)."""
    path = name or default or default_model_path()
    return models.get(f"encoder:{path}", lambda: SentenceEncoder(path))


class EmbedExecutor:
    """One vector per text, as lists of floats."""

    kind = SubtaskKind.EMBED

    def __init__(self, models: ModelCache, default_model: str | None, batch_size: int) -> None:
        self.models = models
        self.default_model = default_model
        self.batch_size = batch_size

    def run(self, payload: EmbedPayload, ctx: ExecutionContext) -> dict[str, Any]:
        """Return ``{"embeddings": [[...], ...], "dim", "model"}``."""
        encoder = load_encoder(self.models, payload.model, self.default_model)
        vectors = encoder.encode(payload.texts, batch_size=self.batch_size,
                                 normalize=payload.normalize)
        return {"embeddings": vectors.tolist(), "dim": encoder.dim, "model": encoder.name}
