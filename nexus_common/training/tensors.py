"""The one type for a model's weights or a delta: tensor name -> tensor."""

from __future__ import annotations

import torch

Tensors = dict[str, torch.Tensor]
