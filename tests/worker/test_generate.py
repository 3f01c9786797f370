"""``generate`` with chat templates, batching, deadlines and clear errors, on tiny models
built here; device selection for every model-using kind."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from nexus_common.protocol import GeneratePayload
from tests.worker.conftest import make_settings, subtask
from tests.worker.tiny_models import tiny_chat_model
from worker_node.device import Placement, PlacementError, choose_placement
from worker_node.executors.base import ExecutionContext, SubtaskTimedOut
from worker_node.executors.generate import CausalLM, GenerateExecutor, GenerationStopped
from worker_node.models import ModelCache
from worker_node.settings import DEFAULT_GENERATE_MODEL

PROMPTS = ["The app crashes", "A cat", "Please add a dark mode to the dashboard and the page",
           "The invoice was charged twice this month, and again", "Hi"]


@pytest.fixture(scope="session")
def tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama whose tokenizer has a ChatML template (like an instruct model)."""
    return tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))


def reference(path: Path, prompt: str, max_new_tokens: int, *, chat: bool) -> str:
    """Greedy output of plain transformers, one prompt at a time, no padding."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    if chat:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                            add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
    else:
        ids = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
    return str(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))


def ctx(timeout_s: float = 60.0) -> ExecutionContext:
    return ExecutionContext("s", "t", timeout_s=timeout_s)


def test_a_chat_model_gets_its_template_through_the_worker(client: httpx.Client,
                                                           tiny_chat: Path) -> None:
    body = client.post("/execute", json=subtask("generate", {
        "prompts": PROMPTS[:2], "model": str(tiny_chat), "max_new_tokens": 6})).json()
    assert body["status"] == "completed", body["error"]
    out = body["output"]
    assert out["chat_template"] is True
    assert out["completions"] == [reference(tiny_chat, p, 6, chat=True) for p in PROMPTS[:2]]
    # the template changed what the model saw: the raw prompt continues differently
    assert out["completions"][0] != reference(tiny_chat, PROMPTS[0], 6, chat=False)
    assert out["new_tokens"] > 0 and out["tokens_per_s"] > 0
    assert (out["device"], out["dtype"]) == ("cpu", "float32")


@pytest.mark.parametrize("model", ["tiny_gpt2", "tiny_chat"])
def test_batches_of_any_size_give_what_one_prompt_at_a_time_gives(
        model: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(model)
    payload = GeneratePayload(prompts=PROMPTS, model=str(path), max_new_tokens=7)
    models = ModelCache(2)
    got = {size: GenerateExecutor(models, None, batch_size=size).run(payload, ctx())
           for size in (1, 2, 8)}
    assert got[1]["completions"] == got[2]["completions"] == got[8]["completions"]
    assert got[1]["completions"] == [reference(path, p, 7, chat=model == "tiny_chat")
                                     for p in PROMPTS]
    assert models.loaded() == [f"causal-lm:{path}"]  # loaded once, shared by all three


def test_sampling_is_reproducible_by_seed_within_a_batch(tiny_chat: Path) -> None:
    executor = GenerateExecutor(ModelCache(1), None, batch_size=4)

    def sample(seed: int) -> list[str]:
        payload = GeneratePayload(prompts=PROMPTS, model=str(tiny_chat), max_new_tokens=12,
                                  temperature=1.0, seed=seed)
        completions: list[str] = executor.run(payload, ctx())["completions"]
        return completions

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


def test_a_prompt_longer_than_the_model_reads_fails_saying_what_to_do(
        client: httpx.Client, tiny_chat: Path) -> None:
    long = "the cat sat on the mat " * 100
    body = client.post("/execute", json=subtask("generate", {
        "prompts": ["short", long], "model": str(tiny_chat), "max_new_tokens": 8})).json()
    assert body["status"] == "failed"
    assert "prompt 1 is" in body["error"] and "at most 256 tokens" in body["error"]
    assert "shorten the prompt or lower max_new_tokens" in body["error"]


def test_a_missing_local_model_fails_with_the_reason(client: httpx.Client,
                                                     tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    body = client.post("/execute", json=subtask("generate", {
        "prompts": ["hi"], "model": str(empty)})).json()
    assert body["status"] == "failed"
    assert f"could not load generation model '{empty}' (the local path)" in body["error"]
    assert client.post("/execute", json=subtask("noop", {})).json()["status"] == "completed"


def test_generation_stops_at_the_deadline_between_and_within_batches(tiny_chat: Path) -> None:
    lm = CausalLM(str(tiny_chat))
    calls = 0

    def third_token() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3

    with pytest.raises(GenerationStopped):
        lm.complete_batch(["A cat"], max_new_tokens=200, temperature=0.0,
                          should_stop=third_token)
    assert calls == 3  # it stopped inside generate, not after 200 tokens

    executor = GenerateExecutor(ModelCache(1), None, batch_size=2)
    payload = GeneratePayload(prompts=PROMPTS, model=str(tiny_chat), max_new_tokens=4)
    with pytest.raises(SubtaskTimedOut, match="after 0 of 5 prompts") as info:
        executor.run(payload, ctx(timeout_s=0.0))
    assert info.value.output is not None and info.value.output["completions"] == [None] * 5


def test_the_default_model_is_used_when_nothing_names_one() -> None:
    """No subtask model, no NADG_GENERATE_MODEL: the default instruct model, not an error.
    (Loading it by id from the Hub cache is tested in test_compat_v1's subprocess.)"""
    settings = make_settings()
    assert settings.generate_model == DEFAULT_GENERATE_MODEL
    executor = GenerateExecutor(ModelCache(1), None)
    assert executor.default_model == DEFAULT_GENERATE_MODEL
    assert make_settings(NADG_GENERATE_MODEL="org/other").generate_model == "org/other"


def test_status_and_health_advertise_kinds_models_and_device(client: httpx.Client,
                                                             worker_url: str) -> None:
    status: dict[str, Any] = client.get("/status").json()
    assert (status["device"], status["dtype"]) == ("cpu", "float32")
    assert status["models"]["generate"] == DEFAULT_GENERATE_MODEL
    assert status["models"]["embed"] == status["models"]["classify"] == \
        "all-MiniLM-L6-v2 (embedded)"
    assert {"generate", "embed", "classify", "train", "python", "noop"} <= set(status["kinds"])
    health = httpx.get(f"{worker_url}/health").json()
    assert health["device"] == "cpu" and set(health["kinds"]) == set(status["kinds"])


def test_placement_follows_the_host() -> None:
    import torch

    assert not torch.cuda.is_available(), "this test describes a CPU-only host"
    assert choose_placement() == Placement("cpu", "float32")
    assert choose_placement("cpu", "bfloat16") == Placement("cpu", "bfloat16")
    for device, dtype, why in [("cuda", "auto", "no CUDA GPU"), ("cuda:1", "auto", "no CUDA"),
                               ("tpu", "auto", "not a device"),
                               ("cpu", "float16", "float16 on the CPU"),
                               ("cpu", "int3", "not one of")]:
        with pytest.raises(PlacementError, match=why):
            choose_placement(device, dtype)


def test_a_gpu_host_gets_cuda_in_half_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision on a GPU host (stand-ins for torch.cuda's answers: no GPU here)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _d=None: "test GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert choose_placement() == Placement("cuda", "bfloat16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert choose_placement() == Placement("cuda", "float16")
    assert choose_placement("cuda:0", "float32") == Placement("cuda:0", "float32")
    with pytest.raises(PlacementError, match="1 GPU"):
        choose_placement("cuda:1")


def test_a_worker_asked_for_a_gpu_it_lacks_refuses_to_start() -> None:
    from worker_node.main import create_app

    app = create_app(make_settings(NADG_DEVICE="cuda"))

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(PlacementError, match="NADG_DEVICE=cuda"):
        asyncio.run(start())


def test_every_model_kind_gets_the_workers_placement() -> None:
    from worker_node.executors.registry import build_executors
    from worker_node.heads import HeadCache

    where = Placement("cpu", "bfloat16")
    executors = build_executors(make_settings(), ModelCache(1), HeadCache(1), where)
    placed = {kind.value: getattr(ex, "placement", None) for kind, ex in executors.items()}
    assert {k: v for k, v in placed.items() if v is not None} == {
        "embed": where, "classify": where, "generate": where, "train": where}


def test_an_encoder_in_bfloat16_still_answers_float32_unit_vectors() -> None:
    import torch

    from nexus_common.encoder import SentenceEncoder, default_model_path

    encoder = SentenceEncoder(default_model_path(), device="cpu", dtype="bfloat16")
    assert next(encoder.model.parameters()).dtype == torch.bfloat16
    vectors = encoder.encode(["a cat", "an invoice"])
    assert vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(2), atol=1e-3)


def test_a_model_that_ships_its_own_code_is_refused_without_running_it(
        tmp_path: Path) -> None:
    """The attack: a model folder (or Hub repo) whose config maps to its own Python."""
    import json

    marker = tmp_path / "pwned"
    model = tmp_path / "evil-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "evil", "architectures": ["EvilForCausalLM"],
        "auto_map": {"AutoConfig": "evil.EvilConfig",
                     "AutoModelForCausalLM": "evil.EvilForCausalLM",
                     "AutoTokenizer": ["evil.EvilTokenizer", None]}}))
    (model / "tokenizer_config.json").write_text(json.dumps({
        "auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", None]}}))
    (model / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    executor = GenerateExecutor(ModelCache(1), None)
    with pytest.raises(ValueError, match="could not load generation model"):
        executor.run(GeneratePayload(prompts=["hi"], model=str(model)), ctx())
    assert not marker.exists()
