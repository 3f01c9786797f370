"""Where models run: the device and dtype chosen from what the host has.

``auto`` picks CUDA when ``torch.cuda.is_available()`` (bfloat16 where the GPU supports
it, else float16) and the CPU otherwise (float32). ``NADG_DEVICE`` / ``NADG_DTYPE``
override the choice; a request the host cannot honour (``cuda`` on a machine without a
GPU, float16 on the CPU) stops the worker at start with the reason, instead of failing
every subtask later. Every executor that loads a model (embed, classify, generate, train)
places it with the one :class:`Placement` the worker chose.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "bfloat16")


class PlacementError(ValueError):
    """``NADG_DEVICE`` / ``NADG_DTYPE`` ask for something this host cannot do."""


@dataclass(frozen=True, slots=True)
class Placement:
    """A torch device string (``cpu``, ``cuda``, ``cuda:1``) and a dtype name."""

    device: str = "cpu"
    dtype: str = "float32"

    @property
    def is_cuda(self) -> bool:
        """True when models run on a GPU."""
        return self.device.startswith("cuda")

    def torch_dtype(self) -> torch.dtype:
        """The dtype as a ``torch.dtype``."""
        import torch

        return getattr(torch, self.dtype)  # type: ignore[no-any-return]


def choose_placement(device: str = "auto", dtype: str = "auto") -> Placement:
    """The placement for this host (imports torch: call it from the lifespan).

    ``device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ``dtype``: ``auto`` or one of
    :data:`DTYPES`. Raises :class:`PlacementError` with what to change.
    """
    import torch

    device = device.strip().lower() or "auto"
    dtype = dtype.strip().lower() or "auto"
    has_cuda = bool(torch.cuda.is_available())
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
    elif device.startswith("cuda"):
        if not has_cuda:
            raise PlacementError(f"NADG_DEVICE={device} but torch sees no CUDA GPU here "
                                 f"(torch {torch.__version__}): install a CUDA build of "
                                 "torch, or set NADG_DEVICE=auto or cpu")
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise PlacementError(f"NADG_DEVICE={device}: this host has "
                                 f"{torch.cuda.device_count()} GPU(s), numbered from 0")
    elif device != "cpu":
        raise PlacementError(f"NADG_DEVICE={device!r} is not a device: use auto, cpu, cuda "
                             "or cuda:N")
    cuda = device.startswith("cuda")
    if dtype == "auto":
        if not cuda:
            dtype = "float32"
        else:
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    elif dtype not in DTYPES:
        raise PlacementError(f"NADG_DTYPE={dtype!r} is not one of auto, {', '.join(DTYPES)}")
    elif dtype == "float16" and not cuda:
        raise PlacementError("NADG_DTYPE=float16 on the CPU is slow and loses accuracy: use "
                             "float32 (or bfloat16) on the CPU, float16 on a GPU")
    placement = Placement(device=device, dtype=dtype)
    logger.info("models run on %s in %s%s", placement.device, placement.dtype,
                f" ({torch.cuda.get_device_name(torch.device(device))})" if cuda else "")
    return placement
