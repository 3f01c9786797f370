"""``classify``: zero-shot by cosine similarity to label descriptions, or a trained head."""

from __future__ import annotations

from typing import Any

from nexus_common.protocol import ClassifyPayload, SubtaskKind
from worker_node.device import Placement
from worker_node.executors.base import ExecutionContext
from worker_node.executors.embed import encode_in_time, load_encoder
from worker_node.heads import HeadCache, HeadError
from worker_node.models import ModelCache


class ClassifyExecutor:
    """Labels for texts.

    Zero-shot: each text gets the label whose description (or name) embedding is closest;
    ``scores`` are cosine similarities. With a head: ``scores`` are softmax probabilities.
    """

    kind = SubtaskKind.CLASSIFY

    def __init__(self, models: ModelCache, heads: HeadCache, default_model: str | None,
                 batch_size: int, placement: Placement | None = None) -> None:
        self.models = models
        self.placement = placement or Placement()
        self.heads = heads
        self.default_model = default_model
        self.batch_size = batch_size

    def run(self, payload: ClassifyPayload, ctx: ExecutionContext) -> dict[str, Any]:
        """Return ``{"labels": [...], "scores": [[...]], "label_names": [...], "mode"}``."""
        import torch

        if payload.head is not None:
            try:
                head = self.heads.resolve(payload.head)
            except HeadError as exc:
                raise ValueError(str(exc)) from exc
            encoder = load_encoder(self.models, payload.model or head.model,
                                   self.default_model, self.placement)
            if encoder.dim != head.dim:
                raise ValueError(f"head expects {head.dim}-d embeddings but encoder "
                                 f"{encoder.name} gives {encoder.dim}-d")
            names = list(payload.labels) if len(payload.labels) == head.num_classes \
                else list(head.labels)
            emb = encode_in_time(encoder, payload.texts, ctx, batch_size=self.batch_size)
            scores = torch.softmax(emb @ head.weight.T + head.bias, dim=1)
            mode = "head"
        else:
            encoder = load_encoder(self.models, payload.model, self.default_model,
                                   self.placement)
            names = list(payload.labels)
            descriptions = payload.label_descriptions or {}
            label_texts = [descriptions.get(name, name) for name in names]
            emb = encode_in_time(encoder, payload.texts, ctx, batch_size=self.batch_size)
            label_emb = encode_in_time(encoder, label_texts, ctx, batch_size=self.batch_size)
            scores = emb @ label_emb.T
            mode = "zero-shot"
        best = scores.argmax(dim=1).tolist()
        return {"labels": [names[i] for i in best], "scores": scores.tolist(),
                "label_names": names, "mode": mode, "model": encoder.name}
