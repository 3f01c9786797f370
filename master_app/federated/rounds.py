"""The federated rounds loop: send global weights and shards, gather deltas, aggregate.

Per round every shard is sent to a live worker (shard ``i`` -> ``live[i % len(live)]``)
as a ``train`` subtask. The round closes when every call answered, or at the round
deadline once a quorum (``min_fraction`` of the calls) has answered; stragglers still
running then are cancelled and their late answers dropped, never merged. Local seeds
depend only on (seed, round, shard), so a resumed run matches an uninterrupted one.

A worker that fails leaves the live set (its shard goes to another worker next round)
at once when a retry cannot help: it is gone (connection refused or reset), refuses the
token, or answered something that is not a usable delta. A failure that may pass (503
busy, a timeout, a subtask that failed or timed out on the worker, as a free Space
waking up or short of memory gives) is a strike instead: the worker keeps its shard and
leaves only after ``max_worker_strikes`` failed rounds in a row.

Failures are data: a call's error becomes an entry of ``RoundReport.failed``; only a
round with fewer successes than the quorum is lost (global weights unchanged), and
``max_failed_rounds`` lost rounds in a row, or no live worker, stop training with
:class:`TrainingError`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import torch

from master_app.dispatch import WorkerAuthError, WorkerProtocolError, WorkerUnreachable
from master_app.federated.checkpoints import CheckpointStore
from master_app.federated.strategies import ClientUpdate, Strategy, make_strategy
from nexus_common.protocol import (
    ModelSpec,
    Subtask,
    SubtaskKind,
    SubtaskResult,
    TrainData,
    TrainHyper,
    TrainPayload,
    WeightCodec,
    WeightsBlob,
)
from nexus_common.training.codec import decode, encode, wire_bytes
from nexus_common.training.evaluate import Evaluator
from nexus_common.training.families import init_weights
from nexus_common.training.tensors import Tensors

logger = logging.getLogger(__name__)


#: Config entries a checkpoint must share with the run that resumes from it.
_RESUME_MUST_MATCH = ("hyper", "strategy", "strategy_args", "seed")


class TrainingError(Exception):
    """Training cannot go on (no live worker, too many lost rounds, bad checkpoint)."""


class UnusableUpdate(ValueError):
    """A worker's answer cannot be merged: wrong tensors or shapes, non-finite values."""


def retry_cannot_help(exc: BaseException) -> bool:
    """True for a failed call after which the worker should leave the training at once."""
    if isinstance(exc, WorkerUnreachable):  # gone, unless it was only slow to answer
        return not isinstance(exc.__cause__, httpx.TimeoutException)
    return isinstance(exc, WorkerAuthError | WorkerProtocolError | UnusableUpdate)


class ExecuteClient(Protocol):
    """What the loop needs from :class:`master_app.dispatch.client.WorkerClient`."""

    async def execute(self, url: str, subtask: Subtask) -> SubtaskResult:
        """Run one subtask on the worker at ``url``."""
        ...


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that defines a training run (recorded in checkpoints)."""

    spec: ModelSpec
    hyper: TrainHyper = field(default_factory=TrainHyper)
    rounds: int = 10
    strategy: str = "fedavg"
    strategy_args: dict[str, Any] = field(default_factory=dict)
    codec: WeightCodec = WeightCodec.FP32
    min_fraction: float = 0.5
    round_deadline_s: float = 60.0
    subtask_timeout_s: float = 300.0
    max_failed_rounds: int = 3
    max_worker_strikes: int = 2
    seed: int = 0
    task_id: str = "train"

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary (checkpoint metadata)."""
        return {"spec": self.spec.model_dump(mode="json"),
                "hyper": self.hyper.model_dump(mode="json"), "rounds": self.rounds,
                "strategy": self.strategy, "strategy_args": self.strategy_args,
                "codec": self.codec.value, "min_fraction": self.min_fraction, "seed": self.seed}


@dataclass(frozen=True)
class RoundReport:
    """How one round went."""

    round: int
    train_loss: float | None
    accuracy: float | None
    eval_loss: float | None
    merged: list[int]
    failed: list[str]
    dropped: int
    bytes_down: int
    bytes_up: int
    duration_s: float
    lost: bool = False
    left: list[str] = field(default_factory=list)


@dataclass
class TrainingResult:
    """The final weights, the per-round reports and what resuming found."""

    weights: Tensors
    reports: list[RoundReport]
    resumed_from: int | None = None
    skipped_checkpoints: list[str] = field(default_factory=list)


@dataclass
class _Call:
    shard: int
    url: str
    down: int


def shard_data(data: TrainData, rows: Sequence[int]) -> TrainData:
    """The rows ``rows`` of ``data``."""
    labels = [data.labels[i] for i in rows]
    if data.features is not None:
        return TrainData(features=[data.features[i] for i in rows], labels=labels)
    if data.texts is None:
        raise ValueError("a shard needs 'features' or 'texts'")
    return TrainData(texts=[data.texts[i] for i in rows], labels=labels)


class FederatedTrainer:
    """Runs the rounds of one training job over a set of worker URLs."""

    def __init__(self, config: TrainingConfig, client: ExecuteClient, workers: Sequence[str],
                 shards: Sequence[TrainData], eval_data: TrainData | None = None,
                 checkpoints: CheckpointStore | None = None,
                 on_round: Callable[[RoundReport], None] | None = None,
                 on_dispatch: Callable[[int, list[str]], None] | None = None) -> None:
        if not workers:
            raise TrainingError("no workers to train on: register or start some first")
        if not shards:
            raise TrainingError("no data shards to train on")
        self.config = config
        self.client = client
        self.live = list(dict.fromkeys(workers))
        self.strikes: dict[str, int] = {}  # failed rounds in a row, per worker
        self.shards = list(shards)
        self.checkpoints = checkpoints
        self.on_round = on_round
        self.on_dispatch = on_dispatch
        self.strategy: Strategy = make_strategy(config.strategy, **config.strategy_args)
        self._eval_data = eval_data
        self._evaluator: Evaluator | None = None

    # -- one round -------------------------------------------------------------------
    def _subtask(self, rnd: int, shard: int, blob: WeightsBlob) -> Subtask:
        c = self.config
        hyper = c.hyper.model_copy(update={"seed": c.seed * 1_000_003 + rnd * 1_000 + shard,
                                           "delta_codec": c.codec})
        payload = TrainPayload(spec=c.spec, weights=blob, data=self.shards[shard], hyper=hyper)
        return Subtask(id=f"{c.task_id}:r{rnd}:s{shard}", task_id=c.task_id,
                       kind=SubtaskKind.TRAIN, payload=payload, timeout_s=c.subtask_timeout_s)

    @staticmethod
    def _check_update(update: ClientUpdate, weights: Tensors) -> ClientUpdate:
        """``update`` if it can be merged into ``weights``; else :class:`UnusableUpdate`.

        A worker's answer is data, never trusted: a delta with other tensors or shapes
        than the global model, non-finite values or no samples would crash the
        aggregation or poison the model, so it fails that call instead.
        """
        missing = sorted(set(weights) - set(update.delta))
        extra = sorted(set(update.delta) - set(weights))
        if missing or extra:
            raise UnusableUpdate(f"the delta does not fit the model: missing {missing[:5]}, "
                                 f"unexpected {extra[:5]}")
        for name, w in weights.items():
            d = update.delta[name]
            if d.shape != w.shape:
                raise UnusableUpdate(f"delta {name!r} has shape {tuple(d.shape)}, the "
                                     f"model's is {tuple(w.shape)}")
            if not bool(torch.isfinite(d).all()):
                raise UnusableUpdate(f"delta {name!r} has NaN or infinite values "
                                     "(local training diverged: lower the learning rate)")
        if update.num_samples <= 0 or not math.isfinite(update.loss):
            raise UnusableUpdate(f"the update reports {update.num_samples} samples and "
                                 f"loss {update.loss}")
        return update

    async def _call(self, call: _Call, subtask: Subtask, weights: Tensors) -> ClientUpdate:
        limit = subtask.timeout_s + 15.0
        scope = asyncio.timeout(limit)  # not wait_for: 3.11's can swallow a cancellation
        try:
            async with scope:
                result = await self.client.execute(call.url, subtask)
        except TimeoutError:
            if scope.expired():
                raise TimeoutError(f"no answer within {limit:.0f}s") from None
            raise
        if not result.ok or result.output is None:
            raise RuntimeError(f"{result.status.value}: {result.error}")
        out = result.output
        try:
            blob = WeightsBlob.model_validate(out["delta"])
            update = ClientUpdate(shard=call.shard, delta=decode(blob),
                                  num_samples=int(out["num_samples"]), loss=float(out["loss"]))
        except (KeyError, TypeError, ValueError) as exc:  # ValidationError, CodecError too
            raise UnusableUpdate(f"the answer is not a training update: "
                                 f"{type(exc).__name__}: {exc}") from exc
        return self._check_update(update, weights)

    async def run_round(self, rnd: int, weights: Tensors) -> tuple[Tensors, RoundReport]:
        """One round from ``weights``; returns the new global weights and the report."""
        c = self.config
        start = time.perf_counter()
        if not self.live:
            raise TrainingError("every worker failed: no live worker left to train on")
        blob = encode(weights, c.codec)
        calls = [_Call(i, self.live[i % len(self.live)], wire_bytes(blob))
                 for i in range(len(self.shards))]
        tasks = {asyncio.create_task(
            self._call(call, self._subtask(rnd, call.shard, blob), weights)): call
            for call in calls}
        if self.on_dispatch is not None:
            self.on_dispatch(rnd, [call.url for call in calls])
        quorum = max(1, math.ceil(c.min_fraction * len(tasks)))
        deadline = time.monotonic() + c.round_deadline_s
        updates: list[ClientUpdate] = []
        failed: list[str] = []
        gone: set[str] = set()
        struck: set[str] = set()
        answered: set[str] = set()
        pending = set(tasks)
        try:
            while pending:
                left = deadline - time.monotonic()
                if left <= 0 and len(updates) >= quorum:
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=left if left > 0 else None,
                    return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    call = tasks[task]
                    exc = task.exception()
                    if exc is None:
                        updates.append(task.result())
                        answered.add(call.url)
                    else:
                        logger.warning("round %d shard %d on %s failed: %s", rnd, call.shard,
                                       call.url, exc)
                        failed.append(f"shard {call.shard} on {call.url}: "
                                      f"{type(exc).__name__}: {exc}")
                        (gone if retry_cannot_help(exc) else struck).add(call.url)
        finally:
            # Stragglers past the deadline are dropped, not merged; if the round itself is
            # cancelled, its calls are cancelled too (never left running on a closed client).
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            logger.info("round %d: dropped %d straggler(s) at the deadline", rnd, len(pending))
        leaving = self._update_live(gone, struck - gone, answered - gone - struck)
        down = sum(call.down for call in calls)
        up = sum(wire_bytes(encode(u.delta, c.codec)) for u in updates) if updates else 0
        lost = len(updates) < quorum
        new_weights = weights if lost else self.strategy.aggregate(weights, updates)
        total = sum(u.num_samples for u in updates)
        loss = sum(u.loss * u.num_samples for u in updates) / total if total else None
        evaluation = await asyncio.to_thread(self._evaluate, new_weights)
        report = RoundReport(
            round=rnd, train_loss=loss,
            accuracy=evaluation[0] if evaluation else None,
            eval_loss=evaluation[1] if evaluation else None,
            merged=sorted(u.shard for u in updates), failed=failed, dropped=len(pending),
            bytes_down=down, bytes_up=up, duration_s=time.perf_counter() - start, lost=lost,
            left=leaving)
        return new_weights, report

    def _update_live(self, gone: set[str], struck: set[str], answered: set[str]) -> list[str]:
        """Count strikes, drop the workers that are gone or struck out; returns those."""
        for url in answered:
            self.strikes.pop(url, None)
        for url in struck:
            self.strikes[url] = self.strikes.get(url, 0) + 1
        out = gone | {u for u in struck if self.strikes[u] >= self.config.max_worker_strikes}
        left = [u for u in self.live if u in out]
        if left:
            logger.warning("worker(s) leaving the training: %s", ", ".join(left))
        self.live = [u for u in self.live if u not in out]
        return left

    def _evaluate(self, weights: Tensors) -> tuple[float, float] | None:
        if self._eval_data is None:
            return None
        if self._evaluator is None:
            self._evaluator = Evaluator(self.config.spec, self._eval_data)
        ev = self._evaluator.evaluate(weights)
        return ev.accuracy, ev.loss

    # -- the whole run ---------------------------------------------------------------
    def _resume(self) -> tuple[int, Tensors, int | None, list[str]]:
        if self.checkpoints is not None:
            found = self.checkpoints.latest()
            ckpt = found.checkpoint
            if ckpt is not None:
                if ckpt.config.get("spec") != self.config.spec.model_dump(mode="json"):
                    raise TrainingError(
                        f"checkpoint round {ckpt.round} in {self.checkpoints.dir} is for a "
                        "different model spec: use another checkpoint directory")
                # Resuming with another strategy, hyperparameters or seed would silently
                # make a hybrid of two trainings (only the number of rounds may grow).
                now = self.config.describe()
                changed = [k for k in _RESUME_MUST_MATCH if ckpt.config.get(k) != now[k]]
                if changed:
                    was = ", ".join(f"{k} {ckpt.config.get(k)!r}" for k in changed)
                    raise TrainingError(
                        f"checkpoint round {ckpt.round} in {self.checkpoints.dir} was made "
                        f"with {was}, not {', '.join(f'{k} {now[k]!r}' for k in changed)}: "
                        "use the same settings to resume it, or another checkpoint directory")
                self.strategy.load_state(ckpt.strategy_state)
                logger.info("resuming from checkpoint round %d", ckpt.round)
                return ckpt.round + 1, ckpt.weights, ckpt.round, found.skipped
            return 1, init_weights(self.config.spec, self.config.seed), None, found.skipped
        return 1, init_weights(self.config.spec, self.config.seed), None, []

    async def run(self) -> TrainingResult:
        """All rounds (resuming from the last good checkpoint if there is one)."""
        first, weights, resumed, skipped = self._resume()
        result = TrainingResult(weights=weights, reports=[], resumed_from=resumed,
                                skipped_checkpoints=skipped)
        lost_in_a_row = 0
        for rnd in range(first, self.config.rounds + 1):
            weights, report = await self.run_round(rnd, weights)
            result.reports.append(report)
            result.weights = weights
            lost_in_a_row = lost_in_a_row + 1 if report.lost else 0
            logger.info("[ROUND %d] loss %s acc %s merged %s failed %d dropped %d", rnd,
                        report.train_loss, report.accuracy, report.merged,
                        len(report.failed), report.dropped)
            if self.checkpoints is not None and not report.lost:
                metrics = {"accuracy": report.accuracy, "eval_loss": report.eval_loss,
                           "train_loss": report.train_loss}
                self.checkpoints.save(rnd, weights, self.strategy.state(), metrics,
                                      self.config.describe())
            if self.on_round is not None:
                self.on_round(report)
            if lost_in_a_row >= self.config.max_failed_rounds:
                raise TrainingError(f"{lost_in_a_row} rounds in a row without a quorum; "
                                    f"last failures: {report.failed[:3]}")
        return result
