"""Local training steps: global weights + a shard -> a weight delta.

Deterministic for a fixed seed on CPU: initialisation, shuffling and dropout-free models
all draw from ``hyper.seed``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from nexus_common.protocol import ModelSpec, TrainData, TrainHyper
from nexus_common.training.encoder import Embedder
from nexus_common.training.families import TrainableModel, build
from nexus_common.training.tensors import Tensors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalResult:
    """What local training produced: delta = local - global, on trainable tensors only."""

    delta: Tensors
    num_samples: int
    loss: float
    steps: int
    train_ms: float


def planned_steps(n: int, hyper: TrainHyper) -> int:
    """Optimizer steps for ``n`` samples: ``local_steps`` or ceil(epochs * n / batch)."""
    if hyper.local_steps is not None:
        return hyper.local_steps
    return max(1, math.ceil(hyper.epochs * n / hyper.batch_size))


def make_optimizer(params: list[nn.Parameter], hyper: TrainHyper) -> torch.optim.Optimizer:
    """The optimizer named in ``hyper``."""
    if hyper.optimizer == "adam":
        return torch.optim.Adam(params, lr=hyper.lr, weight_decay=hyper.weight_decay)
    if hyper.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=hyper.lr, weight_decay=hyper.weight_decay)
    return torch.optim.SGD(params, lr=hyper.lr, momentum=hyper.momentum,
                           weight_decay=hyper.weight_decay)


def batches(n: int, batch_size: int, steps: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Row indices of ``steps`` minibatches: epochs of fresh permutations, in order."""
    out: list[torch.Tensor] = []
    perm = torch.randperm(n, generator=gen)
    pos = 0
    for _ in range(steps):
        if pos >= n:
            perm, pos = torch.randperm(n, generator=gen), 0
        out.append(perm[pos:pos + batch_size])
        pos += batch_size
    return out


def fit(model: TrainableModel, inputs: object, labels: torch.Tensor, hyper: TrainHyper,
        steps: int | None = None) -> tuple[float, int]:
    """Run the optimizer over minibatches; returns (mean loss, steps)."""
    n = int(labels.shape[0])
    steps = steps if steps is not None else planned_steps(n, hyper)
    gen = torch.Generator().manual_seed(hyper.seed)
    optimizer = make_optimizer(model.trainable_parameters(), hyper)
    model.module.train()
    total = 0.0
    for rows in batches(n, hyper.batch_size, steps, gen):
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model.logits(inputs, rows), labels[rows])
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        total += float(loss.detach())
    model.module.eval()
    return total / steps, steps


def train_local(spec: ModelSpec, weights: Tensors | None, data: TrainData,
                hyper: TrainHyper, embedder: Embedder | None = None) -> LocalResult:
    """Local steps from ``weights`` (or a seeded init) on ``data``; returns the delta."""
    start = time.perf_counter()
    torch.manual_seed(hyper.seed)
    model = build(spec, seed=hyper.seed, embedder=embedder)
    if weights is not None:
        model.load_trainable(weights)
    start_state = model.trainable_state()
    labels = torch.tensor(data.labels, dtype=torch.long)
    if int(labels.max()) >= spec.num_classes:
        raise ValueError(f"label {int(labels.max())} is out of range for "
                         f"{spec.num_classes} classes")
    inputs = model.prepare(data.features, data.texts)
    loss, steps = fit(model, inputs, labels, hyper)
    end_state = model.trainable_state()
    delta = {k: end_state[k] - start_state[k] for k in start_state}
    ms = (time.perf_counter() - start) * 1000.0
    logger.debug("local training: %d samples, %d steps, loss %.4f, %.0f ms",
                 len(data.labels), steps, loss, ms)
    return LocalResult(delta=delta, num_samples=len(data.labels), loss=loss, steps=steps,
                       train_ms=ms)
