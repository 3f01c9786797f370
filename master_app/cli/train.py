"""``train``: federated training over the grid, headless.

    python -m master_app train --data examples/tickets_labelled.csv --label-column label \\
        --rounds 5 --strategy fedavg --local 2 --deploy

Prints one progress line per round on stderr and a JSON or text summary on stdout.
Checkpoints go to ``--checkpoint-dir`` after every round; running the same command again
resumes from the last good one.
"""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import ExitStack
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from master_app.cli.common import fail, load_settings, one_line_errors, say, setup_logging
from master_app.service import NO_LIVE_WORKERS, GridService
from master_app.service import training as svc
from master_app.service.stores import store_for_run
from nexus_common.cli import ExitCode
from nexus_common.protocol import WeightCodec

if TYPE_CHECKING:
    from master_app.service.training import RoundReport


class Strategy(StrEnum):
    """How the updates of a round are merged."""

    fedavg = "fedavg"
    diloco = "diloco"


def _above_zero(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value:g} must be above 0")
    return value


def _show_round(total: int) -> Any:
    def show(r: RoundReport) -> None:
        acc = "-" if r.accuracy is None else f"{r.accuracy:.3f}"
        loss = "-" if r.train_loss is None else f"{r.train_loss:.4f}"
        say(f"round {r.round}/{total}  loss {loss}  acc {acc}  merged {len(r.merged)}"
            f"  failed {len(r.failed)}  dropped {r.dropped}  down {r.bytes_down / 1024:.1f} KiB"
            f"  up {r.bytes_up / 1024:.1f} KiB  {r.duration_s:.1f}s"
            f"{'  (lost: no quorum)' if r.lost else ''}"
            f"{'  left: ' + ', '.join(r.left) if r.left else ''}")
    return show


def train(
    data: Annotated[Path, typer.Option(help="labelled CSV", show_default=False)],
    label_column: Annotated[str, typer.Option(
        help="the column holding the labels", show_default=False)],
    text_column: Annotated[str | None, typer.Option(
        help="the text column (default: the only text column)", show_default=False)] = None,
    rounds: Annotated[int, typer.Option(callback=_above_zero)] = 10,
    strategy: Annotated[Strategy, typer.Option()] = Strategy.fedavg,
    local_epochs: Annotated[float | None, typer.Option(
        callback=_above_zero, help="passes over its shard per worker per round",
        show_default=False)] = None,
    codec: Annotated[WeightCodec, typer.Option(
        help="how weights and deltas travel")] = WeightCodec.FP32,
    non_iid: Annotated[float | None, typer.Option(
        metavar="ALPHA", callback=_above_zero,
        help="label-skewed shards, Dirichlet(ALPHA); default IID", show_default=False)] = None,
    local: Annotated[int, typer.Option(
        metavar="N", min=0, help="start N local workers for this run (stopped after)")] = 0,
    checkpoint_dir: Annotated[Path | None, typer.Option(
        help="default .nadg/checkpoints/<data file name>", show_default=False)] = None,
    deploy: Annotated[bool, typer.Option(
        "--deploy", help="publish the trained text head to the workers afterwards")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Federated training of a classifier over the workers."""
    setup_logging()
    with one_line_errors():
        code = _train(data, label_column, text_column, rounds, strategy, local_epochs, codec,
                      non_iid, local, checkpoint_dir, deploy, as_json)
    raise typer.Exit(code)


def _train(data: Path, label_column: str, text_column: str | None, rounds: int,
           strategy: Strategy, local_epochs: float | None, codec: WeightCodec,
           non_iid: float | None, local: int, checkpoint_dir: Path | None, deploy: bool,
           as_json: bool) -> int:
    settings = load_settings()
    try:
        labelled = svc.load_labelled_csv(data, label_column, text_column)
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read {data}: {exc}") from None
    with ExitStack() as stack:
        if local:
            say(f"starting {local} local worker(s)...")
        store = store_for_run(local, settings, stack, prefix="nadg-train-")
        service = GridService(store, settings)
        nodes = service.trainable_workers()
        if not nodes:
            raise fail(NO_LIVE_WORKERS)
        request = svc.train_request(rounds=rounds, strategy=strategy.value,
                                    local_epochs=local_epochs, codec=codec,
                                    non_iid_alpha=non_iid)
        try:
            prepared = svc.prepare_training(labelled, len(nodes), request)
        except ValueError as exc:
            raise fail(str(exc)) from None
        ckpt = checkpoint_dir or Path(".nadg") / "checkpoints" / data.stem
        say(f"training {prepared.config.spec.family.value} on {len(nodes)} worker(s), shards "
            f"{prepared.shard_sizes}, held-out {len(prepared.held_out.labels)}; checkpoints "
            f"in {ckpt}")
        try:
            result = asyncio.run(service.train(prepared, nodes, ckpt, _show_round(rounds)))
        except svc.TrainingFailed as exc:
            raise fail(f"training stopped: {exc}", ExitCode.FAILED) from None
        last = result.reports[-1] if result.reports else None
        metrics: dict[str, Any] = ({"accuracy": last.accuracy, "train_loss": last.train_loss}
                                   if last else svc.checkpoint_metrics(ckpt, result.resumed_from))
        if last is None and result.resumed_from is not None:
            say(f"nothing to train: the checkpoint of round {result.resumed_from} in {ckpt} "
                f"already reaches --rounds {rounds}; raise --rounds to train on, or pass "
                "another --checkpoint-dir")
        summary: dict[str, Any] = {
            "rounds": rounds, "resumed_from": result.resumed_from,
            "skipped_checkpoints": result.skipped_checkpoints,
            "accuracy": metrics.get("accuracy"), "train_loss": metrics.get("train_loss"),
            "bytes_down": sum(r.bytes_down for r in result.reports),
            "bytes_up": sum(r.bytes_up for r in result.reports),
            "labels": prepared.label_names, "checkpoint_dir": str(ckpt)}
        if deploy:
            summary["deployment"] = _deploy(service, nodes, result.weights, prepared, summary)
        if as_json:
            sys.stdout.write(json.dumps(summary, default=str) + "\n")
        else:
            for key, value in summary.items():
                sys.stdout.write(f"{key}: {value}\n")
        return ExitCode.OK


def _deploy(service: GridService, nodes: list[Any], weights: Any, prepared: Any,
            summary: dict[str, Any]) -> dict[str, Any]:
    if not svc.deployable(prepared):
        return {"error": "only text heads are deployable to classify"}
    deployment = asyncio.run(service.deploy(nodes, weights, prepared,
                                            models_dir=Path(".nadg") / "models",
                                            metrics={"accuracy": summary["accuracy"]}))
    return {"model_id": deployment.model.id, "deployed_to": deployment.deployed,
            "failed": deployment.failed}
