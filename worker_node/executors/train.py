"""The ``train`` executor: local training steps on a shard, answering a weight delta."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from nexus_common.protocol import SubtaskKind, TrainPayload
from worker_node.device import Placement
from worker_node.executors.base import ExecutionContext, SubtaskRejected
from worker_node.executors.embed import load_encoder
from worker_node.models import ModelCache

if TYPE_CHECKING:
    import torch

    from nexus_common.training.encoder import Embedder

logger = logging.getLogger(__name__)


class TrainExecutor:
    """Runs :func:`nexus_common.training.local.train_local` for one ``TrainPayload``.

    Output: ``{"delta": WeightsBlob (as JSON), "num_samples", "loss", "steps", "train_ms",
    "delta_bytes"}``. Weights that do not fit the spec, or a corrupt blob, are rejected
    (the master sent something wrong); an error while training is a failure.
    """

    kind = SubtaskKind.TRAIN

    def __init__(self, models: ModelCache | None = None, default_model: str | None = None,
                 placement: Placement | None = None) -> None:
        self.models = models
        self.default_model = default_model
        self.placement = placement or Placement()
        self._embedder: Embedder | None = None

    def _embed(self, texts: list[str], name: str | None) -> torch.Tensor:
        if self._embedder is None:
            from nexus_common.training.encoder import memoised

            models = self.models
            if models is None:
                from nexus_common.training.encoder import default_embedder

                self._embedder = default_embedder
            else:
                self._embedder = memoised(
                    lambda n: load_encoder(models, n, self.default_model, self.placement))
        return self._embedder(texts, name)

    def run(self, payload: Any, ctx: ExecutionContext) -> dict[str, Any]:
        """Train locally and encode the delta in ``payload.hyper.delta_codec``."""
        from nexus_common.training.codec import CodecError, decode, encode, wire_bytes
        from nexus_common.training.families import WeightsMismatch
        from nexus_common.training.local import train_local

        if not isinstance(payload, TrainPayload):
            raise SubtaskRejected(f"train executor got a {type(payload).__name__}")
        try:
            weights = decode(payload.weights) if payload.weights is not None else None
            result = train_local(payload.spec, weights, payload.data, payload.hyper,
                                 embedder=self._embed)
        except (CodecError, WeightsMismatch) as exc:
            raise SubtaskRejected(str(exc)) from exc
        blob = encode(result.delta, payload.hyper.delta_codec)
        logger.info("subtask %s: trained %d samples in %d steps, loss %.4f",
                    ctx.subtask_id, result.num_samples, result.steps, result.loss)
        return {"delta": blob.model_dump(mode="json"), "num_samples": result.num_samples,
                "loss": result.loss, "steps": result.steps, "train_ms": result.train_ms,
                "delta_bytes": wire_bytes(blob)}
