"""Federated training runs, as the CLI and the Training page start them.

Everything torch-heavy (``master_app.federated``) is imported when a function here runs,
never when this module is imported, so the CLI's ``run`` and the other pages stay light.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from database.models import WorkerNode
from database.store import ModelStore, Registry
from master_app.dispatch import EventKind, ProgressEvent
from master_app.service.workers import live_workers

if TYPE_CHECKING:
    from master_app.federated.datasets import LabelledData
    from master_app.federated.deploy import Deployment
    from master_app.federated.rounds import RoundReport, TrainingResult
    from master_app.federated.session import Prepared, TrainRequest
    from master_app.planning.plan import Plan
    from nexus_common.protocol import WeightCodec

logger = logging.getLogger(__name__)

#: The training types front-ends annotate with (imported under TYPE_CHECKING only).
__all__ = [
    "Deployment", "JobFactory", "LabelledData", "Prepared", "RoundReport", "TrainRequest",
    "TrainingCancelled", "TrainingFailed", "TrainingResult", "checkpoint_metrics", "deploy",
    "deploy_job", "deployable", "load_digits", "load_labelled_csv", "prepare_training",
    "load_training_library", "train", "train_request", "trainable_workers", "training_job",
    "use_model_plan",
]

#: What :func:`training_job` and :func:`deploy_job` return: ``(on_event, cancel) -> outcome``.
JobFactory = Callable[[Callable[[ProgressEvent], None], asyncio.Event], Any]


class TrainingFailed(Exception):
    """The rounds stopped (no quorum, every worker gone): the message says why."""


class TrainingCancelled(Exception):
    """Cancel was asked for: the rounds stopped (checkpoints of finished rounds stay)."""


def trainable_workers(registry: Registry) -> list[WorkerNode]:
    """Live workers that can run ``train`` subtasks."""
    return live_workers(registry, "train")


def load_training_library() -> None:
    """Import the training code (torch and all) now; the first call takes seconds, the
    next ones nothing. A page calls it behind a spinner before its first training widget."""
    import master_app.federated.datasets
    import master_app.federated.session  # noqa: F401


def use_model_plan(model_id: str, labels: Sequence[str],
                   sha256: str | None = None) -> tuple[str, Plan]:
    """The command and ``classify`` plan that label rows with the trained head
    ``model_id`` (by reference: the workers it was deployed to hold it).

    Raises :class:`~master_app.planning.plan.PlanError` for labels a plan cannot hold.
    """
    from master_app.planning.plan import parse_plan

    names = [str(label) for label in labels]
    head: dict[str, Any] = {"ref": model_id, "labels": names}
    if sha256:
        head["sha256"] = sha256  # the worker checks the head it holds is this one
    command = f"classify as {' / '.join(names)}"  # planned again, it is zero-shot: honest
    plan = parse_plan({
        "operation": "classify", "params": {"labels": names, "head": head},
        "explanation": f"classify each row with the trained model {model_id} "
                       f"({' / '.join(names)})",
    })
    return command, plan


def load_labelled_csv(path: str | Path, label_column: str,
                      text_column: str | None = None) -> LabelledData:
    """A labelled CSV; raises OSError or ValueError saying what is wrong with it."""
    from master_app.federated.datasets import load_csv

    return load_csv(path, label_column, text_column)


def load_digits() -> LabelledData:
    """The scikit-learn digits demo (numeric features)."""
    from master_app.federated.datasets import load_digits_data

    return load_digits_data()


def train_request(*, rounds: int = 10, strategy: str = "fedavg",
                  local_epochs: float | None = None, codec: WeightCodec | str = "fp32",
                  non_iid_alpha: float | None = None) -> TrainRequest:
    """What a person chooses for a training run."""
    from master_app.federated.session import TrainRequest
    from nexus_common.protocol import WeightCodec

    return TrainRequest(rounds=rounds, strategy=strategy, local_epochs=local_epochs,
                        codec=WeightCodec(codec), non_iid_alpha=non_iid_alpha)


def prepare_training(data: LabelledData, n_workers: int, request: TrainRequest) -> Prepared:
    """Split, shard and configure; raises ValueError for data that cannot be trained on."""
    from master_app.federated.session import prepare

    return prepare(data, n_workers, request)


async def train(prepared: Prepared, workers: Sequence[WorkerNode], token: str | None,
                checkpoint_dir: Path,
                on_round: Callable[[RoundReport], None] | None = None) -> TrainingResult:
    """Run every round over ``workers``, resuming from ``checkpoint_dir`` when it has one.

    Raises :class:`TrainingFailed` when the rounds cannot go on.
    """
    from master_app.federated.rounds import TrainingError
    from master_app.federated.session import train as run_rounds

    try:
        return await run_rounds(prepared, [w.vm_url for w in workers], token, checkpoint_dir,
                                on_round)
    except TrainingError as exc:
        raise TrainingFailed(str(exc)) from exc


def training_job(prepared: Prepared, workers: Sequence[WorkerNode], token: str | None,
                 checkpoint_dir: Path, reports: list[RoundReport]) -> JobFactory:
    """A background job (``(on_event, cancel) -> TrainingResult``): all rounds.

    Every finished round is appended to ``reports`` (read by a page while it runs) and
    reported as a ``completed`` progress event, so the run's fraction is rounds done.
    Cancel stops the rounds and ends the run with :class:`TrainingCancelled`.
    """
    total = prepared.config.rounds

    async def job(on_event: Callable[[ProgressEvent], None],
                  cancel: asyncio.Event) -> TrainingResult:
        def on_round(report: RoundReport) -> None:
            reports.append(report)
            on_event(ProgressEvent(kind=EventKind.COMPLETED, subtask_id=f"round {report.round}",
                                   idx=report.round, done=len(reports), total=total))

        training = asyncio.ensure_future(train(prepared, workers, token, checkpoint_dir,
                                               on_round))
        stop = asyncio.ensure_future(cancel.wait())
        try:
            await asyncio.wait({training, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not training.done():
                training.cancel()
            await asyncio.gather(training, stop, return_exceptions=True)
        if training.cancelled():
            raise TrainingCancelled(f"cancelled after {len(reports)} of {total} rounds")
        return training.result()

    return job


def checkpoint_metrics(directory: Path, rnd: int | None) -> dict[str, Any]:
    """The metrics recorded with checkpoint ``rnd`` (a resumed run that had nothing to do)."""
    from master_app.federated.checkpoints import CheckpointStore
    from nexus_common.training.codec import CodecError

    if rnd is None:
        return {}
    try:
        return CheckpointStore(directory).load(rnd).metrics
    except CodecError:
        return {}


def deployable(prepared: Prepared) -> bool:
    """Whether the trained model can be published to the workers (text heads only)."""
    from nexus_common.protocol import ModelFamily

    return bool(prepared.config.spec.family is ModelFamily.TEXT_HEAD)


async def deploy(store: ModelStore, workers: Sequence[WorkerNode], weights: Any,
                 prepared: Prepared, token: str | None, *, models_dir: Path,
                 metrics: dict[str, Any] | None = None) -> Deployment:
    """Publish a trained text head to ``workers`` and record it in the model store."""
    import httpx

    from master_app.dispatch.client import WorkerClient
    from master_app.federated.deploy import deploy_head

    async with httpx.AsyncClient() as http:
        return await deploy_head(store, WorkerClient(http, token), workers, weights,
                                 prepared.label_names, models_dir=models_dir,
                                 metrics=metrics or {})


def deploy_job(store: ModelStore, workers: Sequence[WorkerNode], weights: Any,
               prepared: Prepared, token: str | None, *, models_dir: Path,
               metrics: dict[str, Any] | None = None) -> JobFactory:
    """:func:`deploy` as a background job (``(on_event, cancel) -> Deployment``)."""

    async def job(on_event: Callable[[ProgressEvent], None],
                  cancel: asyncio.Event) -> Deployment:
        return await deploy(store, workers, weights, prepared, token, models_dir=models_dir,
                            metrics=metrics)

    return job
