"""``generate``: completions from a causal language model (any HF id or local path)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from worker_node.executors.base import ExecutionContext
from worker_node.models import ModelCache
from worker_node.protocol import GeneratePayload, SubtaskKind

#: Seeded sampling sets torch's global RNG, so sampled generations run one at a time.
_SAMPLING_LOCK = threading.Lock()


class CausalLM:
    """A loaded tokenizer + AutoModelForCausalLM pair."""

    def __init__(self, name_or_path: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        local = Path(name_or_path).exists()
        self.name = name_or_path
        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local)
        self.model = AutoModelForCausalLM.from_pretrained(name_or_path, local_files_only=local)
        self.model.eval()

    def complete(self, prompt: str, *, max_new_tokens: int, temperature: float,
                 seed: int) -> str:
        """One completion (the new text only): greedy at temperature 0, else sampled."""
        import torch

        inputs = self.tokenizer(prompt, return_tensors="pt")
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad_id}
        with torch.inference_mode():
            if temperature == 0:
                out = self.model.generate(**inputs, do_sample=False, **options)
            else:
                with _SAMPLING_LOCK, torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    out = self.model.generate(**inputs, do_sample=True,
                                              temperature=temperature, top_k=0, **options)
        new_tokens = out[0, inputs["input_ids"].shape[1]:]
        return str(self.tokenizer.decode(new_tokens, skip_special_tokens=True))


class GenerateExecutor:
    """One completion per prompt."""

    kind = SubtaskKind.GENERATE

    def __init__(self, models: ModelCache, default_model: str | None) -> None:
        self.models = models
        self.default_model = default_model

    def run(self, payload: GeneratePayload, ctx: ExecutionContext) -> dict[str, Any]:
        """Return ``{"completions": [...], "model"}``."""
        name = payload.model or self.default_model
        if not name:
            raise ValueError("no generation model: set payload.model or NADG_GENERATE_MODEL "
                             "to a Hugging Face id or a local path")
        lm = self.models.get(f"causal-lm:{name}", lambda: CausalLM(name))
        completions = []
        for prompt in payload.prompts:
            if ctx.cancel.is_set():
                raise TimeoutError("cancelled after its deadline")
            completions.append(lm.complete(prompt, max_new_tokens=payload.max_new_tokens,
                                           temperature=payload.temperature,
                                           seed=payload.seed))
        return {"completions": completions, "model": name}
