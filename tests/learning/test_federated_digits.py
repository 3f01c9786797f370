"""Federated rounds over real workers on loopback: accuracy, failures, restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from master_app.dispatch.client import (
    WorkerAuthError,
    WorkerBusy,
    WorkerClient,
    WorkerProtocolError,
    WorkerUnreachable,
)
from master_app.federated.centralised import train_centralised
from master_app.federated.checkpoints import CheckpointStore
from master_app.federated.datasets import LabelledData
from master_app.federated.rounds import (
    FederatedTrainer,
    TrainingConfig,
    TrainingError,
    UnusableUpdate,
    retry_cannot_help,
)
from master_app.federated.sharding import iid_shards, label_skew_shards, train_test_split
from nexus_common.protocol import (
    ModelSpec,
    Subtask,
    SubtaskResult,
    TrainHyper,
    WeightCodec,
    WeightsBlob,
)
from nexus_common.training.codec import decode, encode
from nexus_common.training.evaluate import Evaluator
from tests.learning.conftest import TOKEN
from tests.support.servers import WorkerProcess
from tests.support.waiting import async_wait_until

SPEC = ModelSpec(family="mlp", num_classes=10, input_dim=64, hidden=[64])
HYPER = TrainHyper(lr=0.5, batch_size=16, epochs=0.5, optimizer="sgd")


def _split(d: LabelledData, non_iid: bool, n: int = 4):  # type: ignore[no-untyped-def]
    train, test = train_test_split(len(d.data.labels), 0.25, seed=0)
    labels = [d.data.labels[i] for i in train]
    parts = label_skew_shards(labels, n, alpha=0.5, seed=0) if non_iid else iid_shards(
        labels, n, seed=0)
    shards = [d.subset([train[i] for i in p]) for p in parts]
    return d.subset(train), shards, d.subset(test)


async def test_non_iid_federated_matches_centralised(grid: list[str], digits: LabelledData,
                                                     client: WorkerClient,
                                                     tmp_path: Path) -> None:
    """Label-skewed shards (Dirichlet 0.5), 20 rounds x 0.5 epochs = 10 passes each way."""
    train, shards, test = _split(digits, non_iid=True)
    rounds = 20
    cfg = TrainingConfig(spec=SPEC, hyper=HYPER, rounds=rounds, strategy="diloco")
    trainer = FederatedTrainer(cfg, client, grid, shards, test,
                               checkpoints=CheckpointStore(tmp_path, keep=2))
    result = await trainer.run()
    fed = result.reports[-1].accuracy
    central = Evaluator(SPEC, test).evaluate(
        train_centralised(SPEC, train, HYPER, passes=rounds * HYPER.epochs)).accuracy
    assert fed is not None and central > 0.95
    assert fed >= central - 0.02, f"federated {fed:.3f} vs centralised {central:.3f}"
    fedavg = await FederatedTrainer(
        TrainingConfig(spec=SPEC, hyper=HYPER, rounds=rounds, strategy="fedavg"),
        client, grid, shards, test).run()
    assert (fedavg.reports[-1].accuracy or 0) > 0.85  # learns, though noisier under skew
    assert all(r.merged == [0, 1, 2, 3] and not r.failed for r in result.reports)
    assert all(r.bytes_down > 0 and r.bytes_up > 0 for r in result.reports)
    assert CheckpointStore(tmp_path).rounds() == [rounds - 1, rounds]


async def test_restart_resumes_and_skips_a_corrupt_checkpoint(
        grid: list[str], digits: LabelledData, client: WorkerClient, tmp_path: Path) -> None:
    _, shards, test = _split(digits, non_iid=False)
    cfg = TrainingConfig(spec=SPEC, hyper=HYPER, rounds=5, strategy="diloco",
                         strategy_args={"outer_lr": 0.7, "momentum": 0.9})
    reference = await FederatedTrainer(cfg, client, grid, shards, test).run()

    class MasterCrash(Exception):
        pass

    def crash_in_round_4(rnd: int, urls: list[str]) -> None:
        if rnd == 4:
            raise MasterCrash

    store = CheckpointStore(tmp_path, keep=3)
    with pytest.raises(MasterCrash):
        await FederatedTrainer(cfg, client, grid, shards, test, checkpoints=store,
                               on_dispatch=crash_in_round_4).run()
    assert store.rounds() == [1, 2, 3]
    # The newest checkpoint is damaged on disk: the restarted master must notice.
    path = store.tensor_path(3)
    path.write_bytes(path.read_bytes()[:-8] + b"\x00" * 8)

    resumed = await FederatedTrainer(cfg, client, grid, shards, test,
                                     checkpoints=CheckpointStore(tmp_path, keep=3)).run()
    assert resumed.resumed_from == 2
    assert len(resumed.skipped_checkpoints) == 1 and "corrupt" in resumed.skipped_checkpoints[0]
    assert [r.round for r in resumed.reports] == [3, 4, 5]
    for name, value in reference.weights.items():
        assert torch.allclose(resumed.weights[name], value, atol=1e-5), name
    assert resumed.reports[-1].accuracy == pytest.approx(reference.reports[-1].accuracy,
                                                         abs=1e-3)


async def test_worker_killed_mid_round(grid: list[str], digits: LabelledData,
                                       client: WorkerClient) -> None:
    _, shards, test = _split(digits, non_iid=True)
    env = {"NADG_AUTH_TOKEN": TOKEN, "NADG_REGISTER": "0", "NADG_TORCH_THREADS": "1"}
    with WorkerProcess(env=env) as victim:
        workers = [victim.url, *grid[:3]]

        def kill_in_round_2(rnd: int, urls: list[str]) -> None:
            if rnd == 2:
                assert victim.url in urls
                victim.kill()

        cfg = TrainingConfig(spec=SPEC, hyper=HYPER, rounds=8, min_fraction=0.5,
                             codec=WeightCodec.FP16)
        trainer = FederatedTrainer(cfg, client, workers, shards, test,
                                   on_dispatch=kill_in_round_2)
        result = await trainer.run()
    first, second, *rest = result.reports
    assert first.merged == [0, 1, 2, 3] and not first.failed
    assert len(second.failed) == 1 and victim.url in second.failed[0]
    assert second.merged == [1, 2, 3] and not second.lost
    assert all(r.merged == [0, 1, 2, 3] for r in rest)  # shard 0 moved to a live worker
    assert victim.url not in trainer.live
    final = result.reports[-1].accuracy
    assert final is not None and final > 0.9


class _Straggling:
    """Our WorkerClient, except that one worker never answers in time (a stalled host)."""

    def __init__(self, inner: WorkerClient, slow: str) -> None:
        self.inner, self.slow, self.released = inner, slow, asyncio.Event()

    async def execute(self, url: str, subtask: Subtask) -> SubtaskResult:
        result = await self.inner.execute(url, subtask)
        if url == self.slow:
            await self.released.wait()
        return result


async def test_straggler_is_dropped_at_the_deadline(grid: list[str], digits: LabelledData,
                                                    client: WorkerClient) -> None:
    _, shards, test = _split(digits, non_iid=False)
    slow = _Straggling(client, grid[3])
    cfg = TrainingConfig(spec=SPEC, hyper=HYPER, rounds=2, min_fraction=0.75,
                         round_deadline_s=1.0)
    result = await FederatedTrainer(cfg, slow, grid, shards, test).run()
    for report in result.reports:
        assert report.merged == [0, 1, 2] and report.dropped == 1 and not report.lost


class _Holding:
    """Our WorkerClient, except that every call waits for a release (a master mid-round)."""

    def __init__(self, inner: WorkerClient) -> None:
        self.inner, self.release = inner, asyncio.Event()
        self.held = self.cancelled = 0

    async def execute(self, url: str, subtask: Subtask) -> SubtaskResult:
        self.held += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return await self.inner.execute(url, subtask)


async def test_cancelled_training_cancels_its_calls_in_flight(
        grid: list[str], digits: LabelledData, client: WorkerClient) -> None:
    _, shards, test = _split(digits, non_iid=False)
    holding = _Holding(client)
    cfg = TrainingConfig(spec=SPEC, hyper=HYPER, rounds=2)
    run = asyncio.create_task(FederatedTrainer(cfg, holding, grid, shards, test).run())

    async def all_held() -> bool:
        return holding.held == 4

    await async_wait_until(all_held, timeout=30, what="the round's four calls")
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    # No call outlives the cancelled round (none left running on a closed HTTP client).
    assert holding.cancelled == 4


def _drop_a_tensor(delta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(list(delta.items())[1:])


def _poison(delta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.full_like(v, float("nan")) for k, v in delta.items()}


def _reshape(delta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.reshape(-1)[:1] for k, v in delta.items()}


class _Tampering:
    """Our WorkerClient, except that one worker's deltas come back altered."""

    def __init__(self, inner: WorkerClient, bad: str, alter: Any) -> None:
        self.inner, self.bad, self.alter = inner, bad, alter

    async def execute(self, url: str, subtask: Subtask) -> SubtaskResult:
        result = await self.inner.execute(url, subtask)
        if url == self.bad and result.output is not None:
            blob = WeightsBlob.model_validate(result.output["delta"])
            altered = encode(self.alter(decode(blob)), blob.codec)
            output = {**result.output, "delta": altered.model_dump(mode="json")}
            result = result.model_copy(update={"output": output})
        return result


@pytest.mark.parametrize(("alter", "reason"), [(_drop_a_tensor, "does not fit the model"),
                                               (_poison, "NaN or infinite"),
                                               (_reshape, "has shape")])
async def test_a_delta_that_does_not_fit_fails_that_call_only(
        grid: list[str], digits: LabelledData, client: WorkerClient, alter: Any,
        reason: str) -> None:
    _, shards, test = _split(digits, non_iid=False)
    cfg = TrainingConfig(spec=SPEC, hyper=HYPER, rounds=3)
    trainer = FederatedTrainer(cfg, _Tampering(client, grid[0], alter), grid, shards, test)
    result = await trainer.run()
    first, *rest = result.reports
    assert first.merged == [1, 2, 3] and not first.lost
    assert len(first.failed) == 1 and reason in first.failed[0] and grid[0] in first.failed[0]
    assert grid[0] not in trainer.live
    assert all(r.merged == [0, 1, 2, 3] for r in rest)
    assert all(torch.isfinite(w).all() for w in result.weights.values())
    final = result.reports[-1].accuracy
    assert final is not None and final > 0.7


async def test_a_checkpoint_is_not_resumed_with_other_settings(
        grid: list[str], digits: LabelledData, client: WorkerClient, tmp_path: Path) -> None:
    _, shards, test = _split(digits, non_iid=False)
    cfg = TrainingConfig(spec=SPEC, hyper=HYPER, rounds=1, strategy="fedavg")
    await FederatedTrainer(cfg, client, grid, shards, test,
                           checkpoints=CheckpointStore(tmp_path)).run()
    other = TrainingConfig(spec=SPEC, hyper=HYPER, rounds=2, strategy="diloco")
    with pytest.raises(TrainingError, match="strategy 'fedavg', not strategy 'diloco'"):
        await FederatedTrainer(other, client, grid, shards, test,
                               checkpoints=CheckpointStore(tmp_path)).run()
    faster = TrainingConfig(spec=SPEC, hyper=HYPER.model_copy(update={"lr": 0.1}), rounds=2)
    with pytest.raises(TrainingError, match="hyper"):
        await FederatedTrainer(faster, client, grid, shards, test,
                               checkpoints=CheckpointStore(tmp_path)).run()
    more = await FederatedTrainer(TrainingConfig(spec=SPEC, hyper=HYPER, rounds=2), client,
                                  grid, shards, test, checkpoints=CheckpointStore(tmp_path)).run()
    assert more.resumed_from == 1 and [r.round for r in more.reports] == [2]


class _BusyInRounds:
    """Our WorkerClient, except that one worker answers 503 in the given rounds."""

    def __init__(self, inner: WorkerClient, busy: str, rounds: set[int]) -> None:
        self.inner, self.busy, self.rounds = inner, busy, rounds

    async def execute(self, url: str, subtask: Subtask) -> SubtaskResult:
        rnd = int(subtask.id.split(":r", 1)[1].split(":", 1)[0])
        if url == self.busy and rnd in self.rounds:
            raise WorkerBusy(url, "503: every slot busy", retry_after_s=1.0)
        return await self.inner.execute(url, subtask)


@pytest.mark.parametrize(("busy_rounds", "leaves_after"), [({1}, None), ({1, 3}, None),
                                                           ({1, 2}, 2)])
async def test_a_worker_that_may_recover_leaves_only_after_two_failed_rounds_in_a_row(
        grid: list[str], digits: LabelledData, client: WorkerClient, busy_rounds: set[int],
        leaves_after: int | None) -> None:
    _, shards, test = _split(digits, non_iid=False)
    dispatched: dict[int, list[str]] = {}
    cfg = TrainingConfig(spec=SPEC, hyper=HYPER, rounds=4)
    trainer = FederatedTrainer(cfg, _BusyInRounds(client, grid[0], busy_rounds), grid, shards,
                               test, on_dispatch=lambda rnd, urls: dispatched.update({rnd: urls}))
    result = await trainer.run()
    for report in result.reports:
        if report.round in busy_rounds:
            assert report.merged == [1, 2, 3] and not report.lost
            assert len(report.failed) == 1 and "WorkerBusy" in report.failed[0]
        else:
            assert report.merged == [0, 1, 2, 3]
        assert report.left == ([grid[0]] if report.round == leaves_after else [])
        after_leaving = leaves_after is not None and report.round > leaves_after
        assert (dispatched[report.round][0] == grid[0]) is not after_leaving
    assert (grid[0] in trainer.live) is (leaves_after is None)


@pytest.mark.parametrize(("exc", "leaves_at_once"), [
    (WorkerUnreachable("u", "ConnectError: refused"), True),
    (WorkerAuthError("u", "401"), True),
    (WorkerProtocolError("u", "not a SubtaskResult"), True),
    (UnusableUpdate("delta has NaN"), True),
    (WorkerBusy("u", "503", retry_after_s=1.0), False),
    (TimeoutError("no answer within 315s"), False),
    (RuntimeError("timeout: subtask ran past its 300s timeout"), False),
])
def test_which_failures_make_a_worker_leave_at_once(exc: Exception,
                                                    leaves_at_once: bool) -> None:
    assert retry_cannot_help(exc) is leaves_at_once


def test_a_worker_slow_to_answer_is_not_taken_for_gone() -> None:
    slow = WorkerUnreachable("u", "ReadTimeout")
    slow.__cause__ = httpx.ReadTimeout("timed out")
    assert not retry_cannot_help(slow)
