"""Trainable model families built from a :class:`ModelSpec`.

Every family exposes the same small interface (:class:`TrainableModel`): which tensors
are trained and travel (``trainable_state``), how raw inputs become model inputs
(``prepare``) and the logits of a batch. Frozen parts (the sentence encoder) never travel:
both sides rebuild them from the spec.

* ``mlp``: Linear/ReLU layers on numeric features.
* ``text_head``: a linear head (``weight`` [C, D], ``bias`` [C]) over frozen, normalised
  sentence embeddings: the very tensors a worker's ``classify`` uses as a trained head.
* ``lora``: the encoder with LoRA adapters on attention (peft) plus a linear head
  (``head.weight``, ``head.bias``); only adapters and head are trained and sent.
"""

from __future__ import annotations

import logging
import warnings
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from nexus_common.loading import MODEL_BUILD_LOCK
from nexus_common.protocol import ModelFamily, ModelSpec
from nexus_common.training import encoder as enc_mod
from nexus_common.training.tensors import Tensors

logger = logging.getLogger(__name__)

_BUILD_LOCK = MODEL_BUILD_LOCK  # one lock for every model build (nexus_common.loading)


class WeightsMismatch(ValueError):
    """Weights do not fit the spec (missing, unexpected or mis-shaped tensors)."""


class TrainableModel(ABC):
    """A model whose trainable tensors travel between master and workers."""

    module: nn.Module

    @abstractmethod
    def prepare(self, features: list[list[float]] | None, texts: list[str] | None) -> Any:
        """Turn a shard's raw inputs into something :meth:`logits` takes, indexable by rows."""

    @abstractmethod
    def logits(self, inputs: Any, rows: torch.Tensor) -> torch.Tensor:
        """Logits [B, C] of the rows ``rows`` of prepared ``inputs``."""

    def trainable_state(self) -> Tensors:
        """The tensors that are trained (and travel), detached copies, by name."""
        return {n: p.detach().clone() for n, p in self.module.named_parameters()
                if p.requires_grad}

    def load_trainable(self, tensors: Tensors) -> None:
        """Set the trainable tensors; raises :class:`WeightsMismatch` if they do not fit."""
        params = {n: p for n, p in self.module.named_parameters() if p.requires_grad}
        missing = sorted(set(params) - set(tensors))
        extra = sorted(set(tensors) - set(params))
        if missing or extra:
            raise WeightsMismatch(f"weights do not fit the spec: missing {missing[:5]}, "
                                  f"unexpected {extra[:5]}")
        with torch.no_grad():
            for name, p in params.items():
                t = tensors[name]
                if t.shape != p.shape:
                    raise WeightsMismatch(f"tensor {name!r} has shape {tuple(t.shape)}, "
                                          f"the spec needs {tuple(p.shape)}")
                p.copy_(t)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer updates."""
        return [p for p in self.module.parameters() if p.requires_grad]


class MLP(TrainableModel):
    """Linear/ReLU layers on numeric features."""

    def __init__(self, spec: ModelSpec) -> None:
        if spec.input_dim is None:
            raise WeightsMismatch("an 'mlp' spec needs 'input_dim'")
        dims = [spec.input_dim, *spec.hidden, spec.num_classes]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims, dims[1:], strict=False)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.module = nn.Sequential(*layers)
        self.input_dim = spec.input_dim

    def prepare(self, features: list[list[float]] | None, texts: list[str] | None) -> Any:
        if features is None:
            raise ValueError("an 'mlp' model trains on 'features', not texts")
        x = torch.tensor(features, dtype=torch.float32)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"features must be rows of {self.input_dim} numbers, "
                             f"got shape {tuple(x.shape)}")
        return x

    def logits(self, inputs: Any, rows: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(inputs[rows])
        return out


class _Linear(nn.Module):
    """``weight`` [C, D] and ``bias`` [C] at the top level (the classify head layout)."""

    def __init__(self, dim: int, classes: int) -> None:
        super().__init__()
        layer = nn.Linear(dim, classes)
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.bias = nn.Parameter(layer.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


class TextHead(TrainableModel):
    """A linear head on frozen normalised sentence embeddings."""

    def __init__(self, spec: ModelSpec, embedder: enc_mod.Embedder | None = None) -> None:
        self.spec = spec
        self.embedder = embedder or enc_mod.default_embedder
        self.module = _Linear(embedding_dim(spec.encoder), spec.num_classes)

    def prepare(self, features: list[list[float]] | None, texts: list[str] | None) -> Any:
        if texts is None:
            raise ValueError("a 'text_head' model trains on 'texts'")
        return self.embedder(list(texts), self.spec.encoder)

    def logits(self, inputs: Any, rows: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(inputs[rows])
        return out


class _LoraClassifier(nn.Module):
    def __init__(self, peft_model: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.encoder = peft_model
        self.head = head


class LoraEncoder(TrainableModel):
    """The sentence encoder with LoRA adapters, plus a linear head on its embeddings."""

    def __init__(self, spec: ModelSpec) -> None:
        from peft import LoraConfig, get_peft_model

        self.spec = spec
        base = enc_mod.fresh_encoder(spec.encoder)
        config = LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=0.0,
                            target_modules=list(spec.lora_targets), bias="none")
        with warnings.catch_warnings():  # peft calls a deprecated transformers alias
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                    category=FutureWarning)
            peft_model = get_peft_model(base.model, config)
        self._peft = peft_model
        self._tokenizer = base.tokenizer
        self._max_length = min(spec.max_length, base.max_length)
        self.head = nn.Linear(base.dim, spec.num_classes)
        self.module = _LoraClassifier(peft_model, self.head)

    def prepare(self, features: list[list[float]] | None, texts: list[str] | None) -> Any:
        if texts is None:
            raise ValueError("a 'lora' model trains on 'texts'")
        return list(texts)

    def logits(self, inputs: Any, rows: torch.Tensor) -> torch.Tensor:
        batch = [inputs[int(i)] for i in rows]
        emb = enc_mod.forward_texts(self._peft, self._tokenizer, batch, self._max_length)
        out: torch.Tensor = self.head(emb)
        return out


def embedding_dim(name: str | None) -> int:
    """Width of the encoder's embeddings (reads the config; loads the model once)."""
    return enc_mod.load_encoder(name).dim


def build(spec: ModelSpec, seed: int = 0,
          embedder: enc_mod.Embedder | None = None) -> TrainableModel:
    """A fresh model for ``spec``, initialised deterministically from ``seed``.

    ``embedder`` supplies frozen embeddings for ``text_head`` (default: process-wide).
    The initialisation draws from torch's global generator, so builds are serialised: a
    build in another thread (a second training run, a worker's concurrent subtask) would
    otherwise draw between this one's seeding and its draws.
    """
    with _BUILD_LOCK:
        torch.manual_seed(seed)
        if spec.family is ModelFamily.MLP:
            return MLP(spec)
        if spec.family is ModelFamily.TEXT_HEAD:
            return TextHead(spec, embedder)
        return LoraEncoder(spec)


def init_weights(spec: ModelSpec, seed: int = 0) -> Tensors:
    """The initial trainable tensors of ``spec`` for ``seed`` (the round-0 global model)."""
    return build(spec, seed).trainable_state()
