"""Weight codecs, local training steps and the train executor, without HTTP."""

from __future__ import annotations

import threading

import pytest
import torch

from nexus_common.protocol import (
    ModelSpec,
    TrainData,
    TrainHyper,
    TrainPayload,
    WeightCodec,
    WeightsBlob,
)
from nexus_common.training.codec import CodecError, decode, encode, wire_bytes
from nexus_common.training.families import init_weights
from nexus_common.training.local import train_local
from worker_node.executors.base import ExecutionContext, SubtaskRejected
from worker_node.executors.train import TrainExecutor

SPEC = ModelSpec(family="mlp", num_classes=3, input_dim=4, hidden=[8])


def _data(n: int = 60, seed: int = 0) -> TrainData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    return TrainData(features=x.tolist(), labels=y.tolist())


def test_fp32_roundtrip_is_exact_and_checksummed() -> None:
    w = init_weights(SPEC, seed=1)
    blob = encode(w, WeightCodec.FP32)
    back = decode(blob)
    assert back.keys() == w.keys()
    assert all(torch.equal(back[k], w[k]) for k in w)
    tampered = blob.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(CodecError, match="sha256"):
        decode(tampered)


@pytest.mark.parametrize(("codec", "tol", "ratio"), [(WeightCodec.FP16, 1e-3, 0.6),
                                                      (WeightCodec.INT8, 1.0 / 127, 0.4)])
def test_compressed_codecs_are_smaller_and_close(codec: WeightCodec, tol: float,
                                                 ratio: float) -> None:
    w = {"a": torch.linspace(-2, 2, 4000).reshape(40, 100), "b": torch.zeros(7)}
    blob = encode(w, codec)
    back = decode(blob)
    assert wire_bytes(blob) < ratio * wire_bytes(encode(w))
    peak = float(w["a"].abs().max())
    assert float((back["a"] - w["a"]).abs().max()) <= tol * peak + 1e-6
    assert torch.equal(back["b"], w["b"])


def test_local_training_is_deterministic_and_learns() -> None:
    data = _data()
    hyper = TrainHyper(lr=0.2, batch_size=16, epochs=5, seed=3)
    w = init_weights(SPEC, seed=0)
    a = train_local(SPEC, w, data, hyper)
    b = train_local(SPEC, w, data, hyper)
    assert a.num_samples == 60 and a.steps == 19
    assert all(torch.equal(a.delta[k], b.delta[k]) for k in a.delta)
    assert any(float(v.abs().max()) > 0 for v in a.delta.values())
    other = train_local(SPEC, w, data, hyper.model_copy(update={"seed": 4}))
    assert not all(torch.equal(a.delta[k], other.delta[k]) for k in a.delta)
    later = train_local(SPEC, {k: w[k] + a.delta[k] for k in w}, data, hyper)
    assert later.loss < a.loss


def test_executor_returns_encoded_delta_and_rejects_bad_weights() -> None:
    ex = TrainExecutor()
    ctx = ExecutionContext(subtask_id="s", task_id="t", timeout_s=10)
    w = init_weights(SPEC, seed=0)
    payload = TrainPayload(spec=SPEC, weights=encode(w), data=_data(),
                           hyper=TrainHyper(local_steps=3, delta_codec=WeightCodec.INT8))
    out = ex.run(payload, ctx)
    delta = decode(WeightsBlob.model_validate(out["delta"]))
    assert delta.keys() == w.keys() and out["num_samples"] == 60 and out["steps"] == 3
    wrong = ModelSpec(family="mlp", num_classes=3, input_dim=4, hidden=[9])
    with pytest.raises(SubtaskRejected, match="shape"):
        ex.run(payload.model_copy(update={"spec": wrong}), ctx)


def test_payload_validation_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        TrainData(labels=[0])
    with pytest.raises(ValueError, match="2 inputs but 1 labels"):
        TrainData(features=[[1.0], [2.0]], labels=[0])
    with pytest.raises(ValueError, match="input_dim"):
        ModelSpec(family="mlp", num_classes=2)


def test_lora_family_sends_only_adapters_and_head() -> None:
    spec = ModelSpec(family="lora", num_classes=2, lora_r=2, max_length=16)
    w = init_weights(spec, seed=0)
    assert "head.weight" in w and any("lora_A" in k for k in w)
    assert not any("lora" not in k and not k.startswith("head.") for k in w)
    size = sum(v.numel() for v in w.values())
    assert size < 50_000  # MiniLM itself has ~22M parameters; only adapters travel
    data = TrainData(texts=["refund my invoice", "the app crashes", "charged twice",
                            "error on login"], labels=[0, 1, 0, 1])
    res = train_local(spec, w, data, TrainHyper(lr=0.01, batch_size=4, local_steps=2,
                                                optimizer="adam", seed=0))
    assert res.delta.keys() == w.keys()
    assert float(res.delta["head.weight"].abs().max()) > 0


@pytest.mark.parametrize("codec", list(WeightCodec))
def test_every_codec_keeps_shapes_even_of_scalars_and_empty_tensors(codec: WeightCodec) -> None:
    w = {"scalar": torch.tensor(-1.5), "empty": torch.zeros(0, 3), "v": torch.ones(2, 2)}
    back = decode(encode(w, codec))
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in w.items()}
    assert float(back["scalar"]) == pytest.approx(-1.5, abs=0.02)


def test_int8_refuses_non_finite_values_instead_of_zeroing_them() -> None:
    for bad in (float("nan"), float("inf")):
        with pytest.raises(CodecError, match="NaN or infinite"):
            encode({"w": torch.tensor([0.25, bad, -0.5])}, WeightCodec.INT8)


def test_initial_weights_are_the_same_when_other_threads_build_models() -> None:
    """The master builds models in several threads (runs, evaluation): a fixed seed still
    gives the same initial weights."""
    spec = ModelSpec(family="mlp", num_classes=10, input_dim=256, hidden=[256, 256])
    reference = {seed: init_weights(spec, seed) for seed in range(4)}
    mismatches: list[int] = []

    def build_often(seed: int) -> None:
        for _ in range(8):
            w = init_weights(spec, seed)
            if not all(torch.equal(w[k], reference[seed][k]) for k in w):
                mismatches.append(seed)

    threads = [threading.Thread(target=build_often, args=(i % 4,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mismatches == []
