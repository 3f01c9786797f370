"""The sentence encoder for training: the worker's own :class:`SentenceEncoder`.

Frozen embeddings come from exactly the code ``classify`` uses (mean pooling + L2 norm),
so a head trained here fits the worker's classify path. An :data:`Embedder` is a function
``(texts, model) -> [N, D]``; :func:`memoised` wraps an encoder getter (the worker's
model cache, or a process-wide default) with a per-text memo so repeated rounds over the
same shard do not re-encode it.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from nexus_common.encoder import SentenceEncoder, default_model_path

logger = logging.getLogger(__name__)

Embedder = Callable[[list[str], str | None], torch.Tensor]
EncoderGetter = Callable[[str | None], SentenceEncoder]
_MEMO_MAX = 50_000


def resolve(name: str | None) -> str:
    """A model name or path; ``None`` means the embedded MiniLM."""
    return name or default_model_path()


@functools.lru_cache(maxsize=4)
def _load(path: str) -> SentenceEncoder:
    return SentenceEncoder(path)


def load_encoder(name: str | None = None) -> SentenceEncoder:
    """The encoder ``name``, loaded once per process (outside a worker's model cache)."""
    return _load(resolve(name))


def memoised(get_encoder: EncoderGetter) -> Embedder:
    """An embedder over ``get_encoder`` that remembers each (model, text) it encoded."""
    lock = threading.Lock()
    memo: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()

    def embed(texts: list[str], name: str | None) -> torch.Tensor:
        encoder = get_encoder(name)
        with lock:
            missing = list(dict.fromkeys(t for t in texts if (encoder.name, t) not in memo))
        fresh = encoder.encode(missing) if missing else None
        with lock:
            if fresh is not None:
                for text, vec in zip(missing, fresh, strict=True):
                    memo[(encoder.name, text)] = vec.clone()
            found = [memo.get((encoder.name, t)) for t in texts]
            while len(memo) > _MEMO_MAX:
                memo.popitem(last=False)
        if any(v is None for v in found):
            return encoder.encode(texts)
        return torch.stack([v for v in found if v is not None])

    return embed


#: The process-wide embedder (master-side evaluation, tests, the centralised baseline).
default_embedder: Embedder = memoised(load_encoder)


@dataclass(frozen=True)
class TrainableEncoder:
    """A private copy of an encoder's transformer, for LoRA adaptation."""

    tokenizer: Any
    model: Any
    dim: int
    max_length: int


def fresh_encoder(name: str | None = None) -> TrainableEncoder:
    """A deep copy of the encoder (the cached one stays frozen and shared)."""
    base = load_encoder(name)
    return TrainableEncoder(tokenizer=base.tokenizer, model=copy.deepcopy(base.model),
                            dim=base.dim, max_length=base.max_length)


def mean_pool(last_hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of token vectors where ``mask`` is 1, then L2-normalised."""
    m = mask.unsqueeze(-1).to(last_hidden.dtype)
    pooled = (last_hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def forward_texts(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> torch.Tensor:
    """Normalised embeddings through ``model`` with autograd (for LoRA training)."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return mean_pool(out.last_hidden_state, batch["attention_mask"])
