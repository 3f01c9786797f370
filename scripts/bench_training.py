"""Benchmark: federated training on the grid (accuracy per round, bytes on the wire).

``benchmarks()`` returns ``(benchmark, figure, unit)`` rows for ``python -m scripts.bench``;
``python -m scripts.bench_training`` prints them on their own. Four real worker apps run
on loopback (uvicorn in threads of this process); digits (scikit-learn, bundled) is split
into label-skewed shards (Dirichlet 0.5); FedAvg and DiLoCo run 20 rounds x 0.5 local
epochs against a centralised model given the same 10 passes. Bytes per round are the
base64 weights sent to and received from the workers, for each codec and for LoRA.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterator

import httpx

logger = logging.getLogger(__name__)

ROUNDS = 20
WORKERS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _workers(n: int, token: str) -> Iterator[list[str]]:
    import uvicorn

    from worker_node.main import create_app
    from worker_node.settings import WorkerSettings

    servers, urls = [], []
    for i in range(n):
        port = _free_port()
        settings = WorkerSettings(NADG_AUTH_TOKEN=token, WORKER_ID=f"bench-{i}",
                                  NADG_CAPACITY=1, NADG_REGISTER=False, NADG_TORCH_THREADS=1)
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1",
                                               port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        servers.append(server)
        urls.append(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while not all(s.started for s in servers):
            if time.monotonic() > deadline:
                raise RuntimeError("bench workers did not start within 60 s")
            time.sleep(0.05)
        yield urls
    finally:
        for server in servers:
            server.should_exit = True


async def _run(urls: list[str], token: str) -> list[tuple[str, str, str]]:
    from master_app.dispatch.client import WorkerClient
    from master_app.federated.centralised import train_centralised
    from master_app.federated.datasets import load_digits_data
    from master_app.federated.rounds import FederatedTrainer, TrainingConfig
    from master_app.federated.session import TrainRequest, prepare
    from nexus_common.protocol import ModelSpec, TrainData, TrainHyper, WeightCodec
    from nexus_common.training.evaluate import Evaluator

    rows: list[tuple[str, str, str]] = []
    digits = load_digits_data()
    prepared = prepare(digits, len(urls), TrainRequest(rounds=ROUNDS, non_iid_alpha=0.5,
                                                       test_fraction=0.25))
    cfg = prepared.config
    train_rows = TrainData(
        features=[x for s in prepared.shards for x in (s.features or [])],
        labels=[y for s in prepared.shards for y in s.labels])
    central = Evaluator(cfg.spec, prepared.held_out).evaluate(train_centralised(
        cfg.spec, train_rows, cfg.hyper, passes=ROUNDS * cfg.hyper.epochs)).accuracy
    rows.append((f"digits centralised accuracy ({ROUNDS * cfg.hyper.epochs:g} passes)",
                 f"{central:.3f}", "accuracy"))
    async with httpx.AsyncClient() as http:
        client = WorkerClient(http, token)
        for strategy in ("fedavg", "diloco"):
            c = TrainingConfig(spec=cfg.spec, hyper=cfg.hyper, rounds=ROUNDS, strategy=strategy)
            start = time.perf_counter()
            result = await FederatedTrainer(c, client, urls, prepared.shards,
                                            prepared.held_out).run()
            accs = [r.accuracy or 0.0 for r in result.reports]
            rows.append((f"digits non-IID {strategy} accuracy per round (4 workers)",
                         " ".join(f"{a:.2f}" for a in accs), "accuracy"))
            rows.append((f"digits non-IID {strategy} final accuracy - centralised",
                         f"{accs[-1] - central:+.3f}", "accuracy"))
            rows.append((f"digits {strategy} wall time, {ROUNDS} rounds",
                         f"{time.perf_counter() - start:.1f}", "s"))
        for codec in WeightCodec:
            c = TrainingConfig(spec=cfg.spec, hyper=cfg.hyper, rounds=1, codec=codec)
            result = await FederatedTrainer(c, client, urls, prepared.shards,
                                            prepared.held_out).run()
            r = result.reports[0]
            rows.append((f"bytes per round (4 workers, down + up), MLP 64-64-10, {codec.value}",
                         f"{r.bytes_down + r.bytes_up:,}", "bytes"))
        texts = ["refund my invoice please", "the app crashes on start",
                 "please add dark mode", "charged twice", "error 500 on login",
                 "feature idea: export"] * 2
        lora_data = TrainData(texts=texts, labels=[0, 1, 2, 0, 1, 2] * 2)
        lora = ModelSpec(family="lora", num_classes=3, lora_r=4, max_length=32)
        c = TrainingConfig(spec=lora, rounds=1, codec=WeightCodec.FP32,
                           hyper=TrainHyper(lr=1e-3, batch_size=6, local_steps=1,
                                            optimizer="adamw"))
        result = await FederatedTrainer(c, client, urls[:2], [lora_data, lora_data]).run()
        r = result.reports[0]
        rows.append(("bytes per round per worker, MiniLM LoRA r=4 (q,v) + head, fp32",
                     f"{(r.bytes_down + r.bytes_up) // 2:,}", "bytes"))
        from nexus_common.training.encoder import load_encoder

        full = sum(p.numel() for p in load_encoder(None).model.parameters())
        rows.append(("bytes per round per worker, full MiniLM fine-tune, fp32 (computed)",
                     f"{2 * (4 * full * 4 // 3):,}", "bytes"))
    return rows


def benchmarks() -> list[tuple[str, str, str]]:
    """Rows ``(benchmark, figure, unit)`` for the Markdown table of ``scripts.bench``."""
    token = secrets.token_urlsafe(32)
    with _workers(WORKERS, token) as urls:
        return asyncio.run(_run(urls, token))


def main() -> None:
    """Print this module's rows as the suite's Markdown table."""
    from scripts import bench

    bench.main(["--only", "scripts.bench_training"])


if __name__ == "__main__":
    main()
