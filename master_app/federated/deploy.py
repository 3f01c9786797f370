"""Deploy a trained text head: publish it to workers by reference, record where it is.

A worker caches heads by ``ref`` when it sees one inline, so deploying sends one small
``classify`` subtask per worker with the head inline (``HeadSpec(ref, sha256,
safetensors_b64, labels)``); after that, ``classify`` subtasks name the head by ``ref``
alone. The model file is kept under ``models_dir`` and registered in the store's model
registry with one deployment row per worker that answered.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from database.models import ModelRecord, WorkerNode
from database.store import ModelStore
from master_app.federated.checkpoints import atomic_write
from master_app.federated.rounds import ExecuteClient
from nexus_common.protocol import ClassifyPayload, HeadSpec, Subtask, SubtaskKind
from nexus_common.training.codec import sha256_hex, to_bytes

logger = logging.getLogger(__name__)


@dataclass
class Deployment:
    """The model record and which workers got the head (failures as data)."""

    model: ModelRecord
    deployed: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)

    def head_ref(self) -> HeadSpec:
        """A ref-only head spec for later ``classify`` subtasks."""
        return HeadSpec(ref=self.model.id, sha256=self.model.sha256,
                        labels=list(self.model.labels))


def head_spec(model_id: str, weights: dict[str, torch.Tensor], labels: Sequence[str],
              encoder: str | None = None) -> tuple[HeadSpec, bytes]:
    """An inline head spec for ``weights`` (``weight`` [C, D], ``bias`` [C])."""
    data = to_bytes({"weight": weights["weight"], "bias": weights["bias"]})
    spec = HeadSpec(ref=model_id, sha256=sha256_hex(data),
                    safetensors_b64=base64.b64encode(data).decode("ascii"),
                    labels=list(labels), model=encoder)
    return spec, data


async def deploy_head(store: ModelStore, client: ExecuteClient, workers: Sequence[WorkerNode],
                      weights: dict[str, torch.Tensor], labels: Sequence[str], *,
                      models_dir: str | Path, name: str = "text-head",
                      metrics: dict[str, Any] | None = None,
                      encoder: str | None = None) -> Deployment:
    """Save, register and publish a trained head to ``workers``."""
    model_id = f"head-{uuid.uuid4().hex[:12]}"
    spec, data = head_spec(model_id, weights, labels, encoder)
    path = Path(models_dir) / f"{model_id}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    record = store.add_model(ModelRecord(
        id=model_id, name=name, family="text_head", sha256=spec.sha256 or "",
        uri=str(path), labels=tuple(labels), metrics=dict(metrics or {})))
    deployment = Deployment(model=record)

    async def publish(worker: WorkerNode) -> None:
        subtask = Subtask(id=f"deploy:{model_id}:{worker.id}", task_id=f"deploy:{model_id}",
                          kind=SubtaskKind.CLASSIFY, timeout_s=120.0,
                          payload=ClassifyPayload(texts=["deployment check"], head=spec))
        result = await client.execute(worker.vm_url, subtask)
        if not result.ok:
            raise RuntimeError(f"{result.status.value}: {result.error}")

    outcomes = await asyncio.gather(*(publish(w) for w in workers), return_exceptions=True)
    for worker, outcome in zip(workers, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            logger.warning("deploying %s to worker %s failed: %s", model_id, worker.id, outcome)
            deployment.failed[worker.id] = f"{type(outcome).__name__}: {outcome}"
        else:
            store.record_deployment(model_id, worker.id)
            deployment.deployed.append(worker.id)
    logger.info("deployed %s to %d/%d workers", model_id, len(deployment.deployed), len(workers))
    return deployment
