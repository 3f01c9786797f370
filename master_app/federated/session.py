"""One training job end to end, shared by the CLI and the Training page.

:func:`prepare` turns a labelled data set and a few choices into a training config,
worker shards and a held-out split (model family and hyperparameters picked from the
data: an MLP for numeric features, a head on frozen MiniLM embeddings for text);
:func:`train` runs it over worker URLs with a shared HTTP client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from master_app.dispatch import WorkerClient
from master_app.federated.checkpoints import CheckpointStore
from master_app.federated.datasets import LabelledData
from master_app.federated.rounds import (
    FederatedTrainer,
    RoundReport,
    TrainingConfig,
    TrainingResult,
)
from master_app.federated.sharding import iid_shards, label_skew_shards, train_test_split
from nexus_common.protocol import ModelFamily, ModelSpec, TrainData, TrainHyper, WeightCodec


@dataclass(frozen=True)
class TrainRequest:
    """What a person chooses for a training job."""

    rounds: int = 10
    strategy: str = "fedavg"
    local_epochs: float | None = None
    codec: WeightCodec = WeightCodec.FP32
    non_iid_alpha: float | None = None
    test_fraction: float = 0.2
    min_fraction: float = 0.5
    round_deadline_s: float = 120.0
    seed: int = 0
    family: ModelFamily | None = None


@dataclass
class Prepared:
    """A ready training job: config, one shard per worker, the held-out split."""

    config: TrainingConfig
    shards: list[TrainData]
    held_out: TrainData
    label_names: list[str]
    shard_sizes: list[int] = field(default_factory=list)


def default_hyper(family: ModelFamily, epochs: float | None) -> TrainHyper:
    """Hyperparameters that work for each family on small data."""
    if family is ModelFamily.MLP:
        return TrainHyper(lr=0.5, batch_size=16, epochs=epochs or 0.5, optimizer="sgd")
    if family is ModelFamily.TEXT_HEAD:
        return TrainHyper(lr=0.05, batch_size=16, epochs=epochs or 2.0, optimizer="adam")
    return TrainHyper(lr=1e-3, batch_size=8, epochs=epochs or 1.0, optimizer="adamw")


def prepare(data: LabelledData, n_workers: int, request: TrainRequest) -> Prepared:
    """Split, shard and configure; raises ValueError for data that cannot be trained on."""
    if n_workers < 1:
        raise ValueError("training needs at least one worker")
    n = len(data.data.labels)
    train, test = train_test_split(n, request.test_fraction, seed=request.seed)
    if len(train) < n_workers:
        raise ValueError(f"{len(train)} training rows cannot feed {n_workers} workers")
    labels = [data.data.labels[i] for i in train]
    parts = (label_skew_shards(labels, n_workers, request.non_iid_alpha, seed=request.seed)
             if request.non_iid_alpha else iid_shards(labels, n_workers, seed=request.seed))
    family = request.family or (ModelFamily.TEXT_HEAD if data.is_text else ModelFamily.MLP)
    num_classes = len(data.label_names)
    if family is ModelFamily.MLP:
        if data.data.features is None:
            raise ValueError("an MLP needs numeric feature columns, not text")
        spec = ModelSpec(family=family, num_classes=num_classes,
                         input_dim=len(data.data.features[0]), hidden=[64],
                         labels=data.label_names)
    else:
        spec = ModelSpec(family=family, num_classes=num_classes, labels=data.label_names)
    config = TrainingConfig(spec=spec, hyper=default_hyper(family, request.local_epochs),
                            rounds=request.rounds, strategy=request.strategy,
                            codec=request.codec, min_fraction=request.min_fraction,
                            round_deadline_s=request.round_deadline_s, seed=request.seed)
    return Prepared(config=config, shards=[data.subset([train[i] for i in p]) for p in parts],
                    held_out=data.subset(test), label_names=data.label_names,
                    shard_sizes=[len(p) for p in parts])


async def train(prepared: Prepared, workers: Sequence[str], token: str | None,
                checkpoint_dir: str | Path | None = None,
                on_round: Callable[[RoundReport], None] | None = None) -> TrainingResult:
    """Run every round over ``workers``; resumes from ``checkpoint_dir`` when it has one."""
    checkpoints = CheckpointStore(checkpoint_dir) if checkpoint_dir is not None else None
    async with httpx.AsyncClient() as http:
        trainer = FederatedTrainer(prepared.config, WorkerClient(http, token), workers,
                                   prepared.shards, prepared.held_out,
                                   checkpoints=checkpoints, on_round=on_round)
        return await trainer.run()
