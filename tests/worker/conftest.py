"""Fixtures of the worker tests: one shared in-process worker on loopback, a tiny GPT-2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from nexus_common.signing import SigningAuth
from tests.support.servers import serve_app
from worker_node.main import create_app
from worker_node.settings import WorkerSettings

TOKEN = "worker-test-grid-secret-7f3a-0123456789abcdef"
#: Signs every request for the worker it goes to: ``httpx.Client(auth=AUTH)``.
AUTH = SigningAuth(TOKEN)
SENTENCES = [
    "The invoice was charged twice this month.",
    "The app crashes when I open the settings page.",
    "Please add a dark mode to the dashboard.",
    "A cat sat on the mat.",
]


def make_settings(**overrides: Any) -> WorkerSettings:
    """Worker settings for tests (explicit values, no environment needed)."""
    values: dict[str, Any] = {"NADG_AUTH_TOKEN": TOKEN, "WORKER_ID": "test-worker",
                              "NADG_CAPACITY": 2, "NADG_QUEUE_SIZE": 4,
                              "NADG_SANDBOX_MEMORY_MB": 256,
                              "NADG_MAX_BODY_BYTES": 512 * 1024, "NADG_REGISTER": False,
                              # the shared worker sees many deliberately unauthenticated
                              # requests; the throttle tests use the default budget
                              "NADG_AUTH_FAIL_BURST": 100}
    values.update(overrides)
    return WorkerSettings(**values)


def subtask(kind: str, payload: dict[str, Any], sid: str = "s1",
            timeout_s: float = 60.0) -> dict[str, Any]:
    """A Subtask as JSON."""
    return {"id": sid, "task_id": "t1", "kind": kind, "payload": payload,
            "timeout_s": timeout_s}


@pytest.fixture(scope="session")
def worker_app() -> FastAPI:
    """The shared worker's app (its state exists once ``worker_url`` has started it)."""
    return create_app(make_settings())


@pytest.fixture(scope="session")
def worker_url(worker_app: FastAPI) -> Iterator[str]:
    """One worker (capacity 2, queue 4) shared by the tests that do not need their own."""
    with serve_app(worker_app) as url:
        yield url


@pytest.fixture(scope="session")
def client(worker_url: str) -> Iterator[httpx.Client]:
    """An authenticated client of the shared worker."""
    with httpx.Client(base_url=worker_url, auth=AUTH, timeout=120.0) as c:
        yield c


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GPT-2 with a byte-level BPE tokenizer trained here; nothing downloaded."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-gpt2")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(SENTENCES * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",
                                        bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.save_pretrained(path)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2,
                        n_head=2, bos_token_id=eos, eos_token_id=eos)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path
