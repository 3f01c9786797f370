"""Predictions and accuracy of a model given its trainable weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nexus_common.protocol import ModelSpec, TrainData
from nexus_common.training.encoder import Embedder
from nexus_common.training.families import TrainableModel, build
from nexus_common.training.tensors import Tensors


@dataclass(frozen=True)
class Evaluation:
    """Held-out accuracy and mean cross-entropy."""

    accuracy: float
    loss: float
    n: int


class Evaluator:
    """Evaluates weights of one spec on one data set; prepares the inputs once."""

    def __init__(self, spec: ModelSpec, data: TrainData, batch_size: int = 256,
                 embedder: Embedder | None = None) -> None:
        self.model: TrainableModel = build(spec, seed=0, embedder=embedder)
        self.inputs = self.model.prepare(data.features, data.texts)
        self.labels = torch.tensor(data.labels, dtype=torch.long)
        self.batch_size = batch_size

    def predict(self, weights: Tensors) -> torch.Tensor:
        """Predicted class per row."""
        return self.logits(weights).argmax(dim=1)

    def logits(self, weights: Tensors) -> torch.Tensor:
        """Logits [N, C] under ``weights``."""
        self.model.load_trainable(weights)
        self.model.module.eval()
        n = int(self.labels.shape[0])
        parts = []
        with torch.inference_mode():
            for i in range(0, n, self.batch_size):
                rows = torch.arange(i, min(n, i + self.batch_size))
                parts.append(self.model.logits(self.inputs, rows))
        return torch.cat(parts)

    def evaluate(self, weights: Tensors) -> Evaluation:
        """Accuracy and loss under ``weights``."""
        logits = self.logits(weights)
        loss = float(nn.functional.cross_entropy(logits, self.labels))
        acc = float((logits.argmax(dim=1) == self.labels).float().mean())
        return Evaluation(accuracy=acc, loss=loss, n=int(self.labels.shape[0]))
