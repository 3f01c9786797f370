"""``python -m master_app train``: federated training over the grid, headless.

    python -m master_app train --data examples/tickets_labelled.csv --label-column label \\
        --rounds 5 --strategy fedavg --local 2 --deploy

Prints one progress line per round on stderr and a JSON or text summary on stdout.
Checkpoints go to ``--checkpoint-dir`` after every round; running the same command again
resumes from the last good one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from database import StoreError
from database.models import WorkerNode, WorkerStatus
from database.store import Store
from master_app.federated.datasets import load_csv
from master_app.local_grid import store_for_run
from master_app.settings import MasterSettings
from worker_node.protocol import WeightCodec

if TYPE_CHECKING:
    from master_app.federated.rounds import RoundReport

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _positive(kind: type[int] | type[float]) -> Any:
    """An argparse type: a number above zero (else a usage error that says so)."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} must be above 0")
        return value
    return parse


def register(sub: Any) -> None:
    """Add the ``train`` subcommand to the master CLI's subparsers."""
    p = sub.add_parser("train", help="federated training of a classifier over the workers")
    p.add_argument("--data", type=Path, required=True, help="labelled CSV")
    p.add_argument("--label-column", required=True, help="the column holding the labels")
    p.add_argument("--text-column", help="the text column (default: the only text column)")
    p.add_argument("--rounds", type=_positive(int), default=10)
    p.add_argument("--strategy", choices=["fedavg", "diloco"], default="fedavg")
    p.add_argument("--local-epochs", type=_positive(float), default=None,
                   help="passes over its shard per worker per round")
    p.add_argument("--codec", choices=[c.value for c in WeightCodec], default="fp32",
                   help="how weights and deltas travel")
    p.add_argument("--non-iid", type=_positive(float), default=None, metavar="ALPHA",
                   help="label-skewed shards, Dirichlet(ALPHA); default IID")
    p.add_argument("--local", type=int, default=0, metavar="N",
                   help="start N local workers for this run (stopped after)")
    p.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="default .nadg/checkpoints/<data file name>")
    p.add_argument("--deploy", action="store_true",
                   help="publish the trained text head to the workers afterwards")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=cmd_train)


def _progress(total: int) -> Any:
    def show(r: RoundReport) -> None:
        acc = "-" if r.accuracy is None else f"{r.accuracy:.3f}"
        loss = "-" if r.train_loss is None else f"{r.train_loss:.4f}"
        sys.stderr.write(
            f"round {r.round}/{total}  loss {loss}  acc {acc}  merged {len(r.merged)}"
            f"  failed {len(r.failed)}  dropped {r.dropped}  down {r.bytes_down / 1024:.1f} KiB"
            f"  up {r.bytes_up / 1024:.1f} KiB  {r.duration_s:.1f}s"
            f"{'  (lost: no quorum)' if r.lost else ''}"
            f"{'  left: ' + ', '.join(r.left) if r.left else ''}\n")
        sys.stderr.flush()
    return show


def _workers(store: Store) -> list[WorkerNode]:
    live = store.list_workers([WorkerStatus.ACTIVE, WorkerStatus.BUSY])
    return [w for w in live if not w.capabilities or "train" in w.capabilities]


def cmd_train(args: argparse.Namespace, settings: MasterSettings) -> int:
    """``train``: load the CSV, shard it, run the rounds, report (and deploy)."""
    from master_app.federated.rounds import TrainingError  # torch: only when training
    from master_app.federated.session import TrainRequest, prepare, train

    try:
        data = load_csv(args.data, args.label_column, args.text_column)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"error: cannot read {args.data}: {exc}\n")
        return EXIT_USAGE
    with ExitStack() as stack:
        try:
            store = store_for_run(args.local, settings, stack, prefix="nadg-train-")
        except StoreError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return EXIT_USAGE
        nodes = _workers(store)
        if not nodes:
            sys.stderr.write("error: no live workers in the registry; add one with "
                             "`python -m database.manage_workers add URL` or use --local N\n")
            return EXIT_USAGE
        request = TrainRequest(rounds=args.rounds, strategy=args.strategy,
                               local_epochs=args.local_epochs, codec=WeightCodec(args.codec),
                               non_iid_alpha=args.non_iid)
        try:
            prepared = prepare(data, len(nodes), request)
        except ValueError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return EXIT_USAGE
        ckpt = args.checkpoint_dir or Path(".nadg") / "checkpoints" / args.data.stem
        sys.stderr.write(f"training {prepared.config.spec.family.value} on {len(nodes)} "
                         f"worker(s), shards {prepared.shard_sizes}, held-out "
                         f"{len(prepared.held_out.labels)}; checkpoints in {ckpt}\n")
        try:
            result = asyncio.run(train(prepared, [n.vm_url for n in nodes],
                                       settings.auth_token, ckpt, _progress(args.rounds)))
        except TrainingError as exc:
            sys.stderr.write(f"error: training stopped: {exc}\n")
            return EXIT_FAILED
        last = result.reports[-1] if result.reports else None
        metrics: dict[str, Any] = ({"accuracy": last.accuracy, "train_loss": last.train_loss}
                                   if last else _checkpoint_metrics(ckpt, result.resumed_from))
        if last is None and result.resumed_from is not None:
            sys.stderr.write(f"nothing to train: the checkpoint of round {result.resumed_from} "
                             f"in {ckpt} already reaches --rounds {args.rounds}; raise "
                             "--rounds to train on, or pass another --checkpoint-dir\n")
        summary: dict[str, Any] = {
            "rounds": args.rounds, "resumed_from": result.resumed_from,
            "skipped_checkpoints": result.skipped_checkpoints,
            "accuracy": metrics.get("accuracy"),
            "train_loss": metrics.get("train_loss"),
            "bytes_down": sum(r.bytes_down for r in result.reports),
            "bytes_up": sum(r.bytes_up for r in result.reports),
            "labels": prepared.label_names, "checkpoint_dir": str(ckpt)}
        if args.deploy:
            summary["deployment"] = _deploy(store, nodes, result.weights, prepared, settings,
                                            summary)
        if args.json:
            sys.stdout.write(json.dumps(summary, default=str) + "\n")
        else:
            for key, value in summary.items():
                sys.stdout.write(f"{key}: {value}\n")
        return EXIT_OK


def _checkpoint_metrics(directory: Path, rnd: int | None) -> dict[str, Any]:
    """The metrics recorded with checkpoint ``rnd`` (a resumed run that had nothing to do)."""
    from master_app.federated.checkpoints import CheckpointStore
    from worker_node.training.codec import CodecError

    if rnd is None:
        return {}
    try:
        return CheckpointStore(directory).load(rnd).metrics
    except CodecError:
        return {}


def _deploy(store: Store, nodes: list[WorkerNode], weights: Any, prepared: Any,
            settings: MasterSettings, summary: dict[str, Any]) -> dict[str, Any]:
    import httpx

    from master_app.federated.deploy import deploy_head
    from master_app.worker_client import WorkerClient

    if prepared.config.spec.family.value != "text_head":
        return {"error": "only text heads are deployable to classify"}

    async def go() -> Any:
        async with httpx.AsyncClient() as http:
            return await deploy_head(store, WorkerClient(http, settings.auth_token), nodes,
                                     weights, prepared.label_names,
                                     models_dir=Path(".nadg") / "models",
                                     metrics={"accuracy": summary["accuracy"]})

    deployment = asyncio.run(go())
    return {"model_id": deployment.model.id, "deployed_to": deployment.deployed,
            "failed": deployment.failed}
