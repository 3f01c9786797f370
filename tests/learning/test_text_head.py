"""A text classifier trained over the grid beats zero-shot, and is deployed to workers."""

from __future__ import annotations

from pathlib import Path

from database.config import StoreSettings, open_store
from master_app.dispatch import WorkerClient
from master_app.federated.datasets import load_csv
from master_app.federated.deploy import deploy_head
from master_app.federated.rounds import FederatedTrainer, TrainingConfig
from master_app.federated.sharding import iid_shards, train_test_split
from nexus_common.protocol import (
    ClassifyPayload,
    ModelSpec,
    Subtask,
    SubtaskKind,
    TrainData,
    TrainHyper,
    WeightCodec,
)
from tests.support.servers import REPO_ROOT

CSV = REPO_ROOT / "examples" / "tickets_labelled.csv"


async def _classify(client: WorkerClient, url: str, payload: ClassifyPayload) -> list[str]:
    result = await client.execute(url, Subtask(id="c", task_id="eval", kind=SubtaskKind.CLASSIFY,
                                                payload=payload, timeout_s=120))
    assert result.ok, result.error
    assert result.output is not None
    return list(result.output["labels"])


async def test_trained_head_beats_zero_shot_and_is_deployed(
        grid: list[str], client: WorkerClient, tmp_path: Path) -> None:
    data = load_csv(CSV, "label")
    assert data.is_text and data.label_names == ["billing", "bug", "feature"]
    train, test = train_test_split(len(data.data.labels), 0.3, seed=0)
    parts = iid_shards([data.data.labels[i] for i in train], 4, seed=0)
    shards = [data.subset([train[i] for i in p]) for p in parts]
    held_out = data.subset(test)
    assert held_out.texts is not None
    truth = [data.label_names[y] for y in held_out.labels]

    spec = ModelSpec(family="text_head", num_classes=3, labels=data.label_names)
    cfg = TrainingConfig(spec=spec, rounds=4, codec=WeightCodec.FP16,
                         hyper=TrainHyper(lr=0.05, batch_size=16, epochs=2, optimizer="adam"))
    result = await FederatedTrainer(cfg, client, grid, shards, held_out).run()
    trained_acc = result.reports[-1].accuracy
    assert trained_acc is not None

    zero_shot = await _classify(client, grid[0], ClassifyPayload(
        texts=held_out.texts, labels=data.label_names))
    zero_acc = sum(p == t for p, t in zip(zero_shot, truth, strict=True)) / len(truth)

    store = open_store(StoreSettings(NADG_REGISTRY=tmp_path / "registry.db"))
    try:
        nodes = [store.add_worker(url, name=f"w{i}") for i, url in enumerate(grid)]
        deployment = await deploy_head(store, client, nodes, result.weights, data.label_names,
                                       models_dir=tmp_path / "models",
                                       metrics={"accuracy": trained_acc})
        assert sorted(deployment.deployed) == sorted(n.id for n in nodes)
        assert not deployment.failed
        assert {d.worker_id for d in store.list_deployments(deployment.model.id)} == {
            n.id for n in nodes}
        assert store.get_model(deployment.model.id) is not None
        assert Path(deployment.model.uri).is_file()
        # A later classify names the head by reference only; every worker has it.
        by_ref = await _classify(client, grid[2], ClassifyPayload(
            texts=held_out.texts, head=deployment.head_ref()))
    finally:
        store.close()
    deployed_acc = sum(p == t for p, t in zip(by_ref, truth, strict=True)) / len(truth)
    assert abs(deployed_acc - trained_acc) < 0.02  # fp32 head vs master-side evaluation
    assert deployed_acc > zero_acc + 0.05, f"trained {deployed_acc:.3f} vs zero-shot {zero_acc:.3f}"


async def test_lora_rounds_over_the_grid_send_only_adapters(grid: list[str],
                                                            client: WorkerClient) -> None:
    texts = ["refund my invoice please", "the app crashes on start", "charged twice this month",
             "error 500 when I log in", "why is my bill so high", "the page freezes"]
    data = TrainData(texts=texts, labels=[0, 1, 0, 1, 0, 1])
    spec = ModelSpec(family="lora", num_classes=2, lora_r=2, max_length=24)
    cfg = TrainingConfig(spec=spec, rounds=3, hyper=TrainHyper(
        lr=5e-3, batch_size=6, local_steps=2, optimizer="adamw"))
    result = await FederatedTrainer(cfg, client, grid[:2], [data, data], data).run()
    losses = [r.train_loss for r in result.reports]
    assert all(loss is not None for loss in losses)
    assert losses[-1] < losses[0]  # type: ignore[operator]
    assert (result.reports[-1].accuracy or 0.0) >= 5 / 6
    assert all(k.startswith("head.") or "lora_" in k for k in result.weights)
    # adapters + head: a few hundred KB per round, where the encoder is ~90 MB
    assert all(r.bytes_up < 1_000_000 for r in result.reports)
