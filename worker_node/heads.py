"""Trained linear classification heads: decoding from a HeadSpec, and a cache by ``ref``.

A head is safetensors with ``weight`` [C, D] and ``bias`` [C], applied to the encoder's
L2-normalised sentence embeddings: ``probs = softmax(emb @ weight.T + bias)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nexus_common.protocol import HeadSpec
from worker_node.executors.base import SubtaskRejected

if TYPE_CHECKING:
    import torch


class HeadError(ValueError):
    """An inline head that cannot be used (bad base64, wrong tensors, checksum mismatch)."""


@dataclass(frozen=True, slots=True)
class LinearHead:
    """A decoded head: tensors, label names and the encoder it expects."""

    weight: torch.Tensor
    bias: torch.Tensor
    labels: tuple[str, ...]
    model: str | None
    sha256: str

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return int(self.weight.shape[0])

    @property
    def dim(self) -> int:
        """D, the embedding size it expects."""
        return int(self.weight.shape[1])


def decode_head(spec: HeadSpec) -> LinearHead:
    """Decode an inline head; raises :class:`HeadError` with what is wrong."""
    from safetensors.torch import load

    if spec.safetensors_b64 is None:
        raise HeadError("the head has no inline 'safetensors_b64' to decode")
    try:
        raw = base64.b64decode(spec.safetensors_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HeadError(f"head.safetensors_b64 is not valid base64: {exc}") from exc
    digest = hashlib.sha256(raw).hexdigest()
    if spec.sha256 is not None and spec.sha256 != digest:
        raise HeadError(f"head sha256 mismatch: payload says {spec.sha256}, bytes are {digest}")
    try:
        tensors = load(raw)
    except Exception as exc:  # safetensors raises its own error types
        raise HeadError(f"head.safetensors_b64 is not a safetensors file: {exc}") from exc
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if weight is None or bias is None:
        raise HeadError(f"a head needs tensors 'weight' and 'bias'; got {sorted(tensors)}")
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise HeadError(f"head shapes must be weight [C, D] and bias [C]; got "
                        f"{tuple(weight.shape)} and {tuple(bias.shape)}")
    labels = tuple(spec.labels) or tuple(str(i) for i in range(weight.shape[0]))
    if len(labels) != weight.shape[0]:
        raise HeadError(f"the head has {weight.shape[0]} classes but {len(labels)} labels")
    return LinearHead(weight=weight.float(), bias=bias.float(), labels=labels,
                      model=spec.model, sha256=digest)


class HeadCache:
    """The heads this worker has seen, by ``ref`` (LRU, thread-safe)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._heads: OrderedDict[str, LinearHead] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, ref: str, head: LinearHead) -> None:
        """Cache ``head`` under ``ref``."""
        with self._lock:
            self._heads[ref] = head
            self._heads.move_to_end(ref)
            while len(self._heads) > self.size:
                self._heads.popitem(last=False)

    def get(self, ref: str) -> LinearHead | None:
        """The head cached under ``ref``, if any."""
        with self._lock:
            head = self._heads.get(ref)
            if head is not None:
                self._heads.move_to_end(ref)
            return head

    def refs(self) -> list[str]:
        """Refs of the cached heads."""
        with self._lock:
            return list(self._heads)

    def resolve(self, spec: HeadSpec) -> LinearHead:
        """The head a spec names: decoded inline (and cached by ref) or taken from the cache.

        A ref-only spec whose head is not cached raises :class:`SubtaskRejected`.
        """
        if spec.safetensors_b64 is not None:
            head = decode_head(spec)
            if spec.ref is not None:
                self.put(spec.ref, head)
            return head
        ref = spec.ref or ""
        cached = self.get(ref)
        if cached is None:
            raise SubtaskRejected(f"head {ref!r} is not cached on this worker; resend the "
                                  "subtask with the head inline (head.safetensors_b64)")
        if spec.sha256 is not None and spec.sha256 != cached.sha256:
            raise SubtaskRejected(f"cached head {ref!r} has sha256 {cached.sha256}, not "
                                  f"{spec.sha256}; resend the head inline")
        return cached
