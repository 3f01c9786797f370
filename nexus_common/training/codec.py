"""Named tensors <-> :class:`WeightsBlob` (safetensors bytes, base64), fp32/fp16/int8.

int8 uses one symmetric scale per tensor: ``q = round(x / s)`` with ``s = max|x| / 127``;
the scale travels as a float32 tensor named ``<name>::scale`` beside it.
"""

from __future__ import annotations

import base64
import hashlib
import logging

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from nexus_common.protocol import WeightCodec, WeightsBlob
from nexus_common.training.tensors import Tensors

logger = logging.getLogger(__name__)

_SCALE = "::scale"


class CodecError(ValueError):
    """A weights blob could not be decoded (bad base64, checksum, or tensor set)."""


def sha256_hex(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def to_bytes(tensors: Tensors, codec: WeightCodec = WeightCodec.FP32) -> bytes:
    """safetensors bytes of ``tensors`` in ``codec``."""
    out: Tensors = {}
    for name, t in tensors.items():
        x = t.detach().to(torch.float32).contiguous()
        if codec is WeightCodec.FP32:
            out[name] = x
        elif codec is WeightCodec.FP16:
            out[name] = x.to(torch.float16)
        else:
            if not bool(torch.isfinite(x).all()):  # NaN/inf would quantise to plausible zeros
                raise CodecError(f"tensor {name!r} has NaN or infinite values: it cannot be "
                                 "sent as int8 (local training diverged?)")
            peak = float(x.abs().max()) if x.numel() else 0.0
            scale = peak / 127.0 if peak > 0 else 1.0
            out[name] = torch.round(x / scale).clamp(-127, 127).to(torch.int8)
            out[name + _SCALE] = torch.tensor([scale], dtype=torch.float32)
    return bytes(st_save(out, metadata={"codec": codec.value}))


def from_bytes(data: bytes, codec: WeightCodec = WeightCodec.FP32) -> Tensors:
    """float32 tensors from safetensors bytes written by :func:`to_bytes`."""
    try:
        raw = st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise CodecError(f"not a safetensors blob: {exc}") from exc
    if codec is not WeightCodec.INT8:
        return {k: v.to(torch.float32) for k, v in raw.items()}
    out: Tensors = {}
    for name, q in raw.items():
        if name.endswith(_SCALE):
            continue
        scale = raw.get(name + _SCALE)
        if scale is None:
            raise CodecError(f"int8 tensor {name!r} has no scale {name + _SCALE!r}")
        if scale.numel() != 1:
            raise CodecError(f"int8 scale {name + _SCALE!r} must be one number, "
                             f"not shape {tuple(scale.shape)}")
        # A 0-dim scale keeps the tensor's own shape (a [1] scale made scalars [1]).
        out[name] = q.to(torch.float32) * scale.to(torch.float32).reshape(())
    return out


def encode(tensors: Tensors, codec: WeightCodec = WeightCodec.FP32) -> WeightsBlob:
    """A :class:`WeightsBlob` (with sha256 of the raw bytes) for ``tensors``."""
    data = to_bytes(tensors, codec)
    return WeightsBlob(codec=codec, safetensors_b64=base64.b64encode(data).decode("ascii"),
                       sha256=sha256_hex(data))


def decode(blob: WeightsBlob) -> Tensors:
    """float32 tensors of ``blob``; checks its sha256 when it carries one."""
    try:
        data = base64.b64decode(blob.safetensors_b64, validate=True)
    except ValueError as exc:
        raise CodecError(f"weights are not valid base64: {exc}") from exc
    if blob.sha256 is not None and sha256_hex(data) != blob.sha256:
        raise CodecError("weights sha256 does not match: the blob was corrupted in transit")
    return from_bytes(data, blob.codec)


def wire_bytes(blob: WeightsBlob) -> int:
    """Characters the blob takes in JSON (its base64 text)."""
    return len(blob.safetensors_b64)
