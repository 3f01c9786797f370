"""``generate``: completions from a causal language model (any HF id or local path).

A model named by a Hugging Face id is downloaded on first use (the Hub's own cache keeps
it across restarts of the same host) and kept in the worker's model cache; a local path
loads with ``local_files_only``. The default is
:data:`worker_node.settings.DEFAULT_GENERATE_MODEL`, so a worker with no configuration
can generate. When the tokenizer has a chat template, each prompt is sent as one user
turn of a chat (what an instruct model expects); otherwise it is continued as plain text.
Prompts run in batches (left padding, so every row's new tokens start at the same
position), on the device and in the dtype the worker chose (:mod:`worker_node.device`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from nexus_common.loading import MODEL_BUILD_LOCK
from nexus_common.protocol import GeneratePayload, SubtaskKind
from worker_node.device import Placement
from worker_node.executors.base import ExecutionContext, SubtaskTimedOut
from worker_node.models import ModelCache
from worker_node.settings import DEFAULT_GENERATE_MODEL

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: Seeded sampling sets torch's global RNG, so sampled generations run one at a time.
_SAMPLING_LOCK = threading.Lock()


class ModelLoadError(ValueError):
    """The model could not be loaded (unknown id, no network, not a causal LM, ...)."""


class GenerationStopped(Exception):
    """The deadline passed while generating; ``texts`` holds the finished prompts."""

    def __init__(self, texts: list[str | None]) -> None:
        super().__init__("stopped at the deadline")
        self.texts = texts


@dataclass(frozen=True, slots=True)
class Batch:
    """Texts of one generate call and what it cost: new tokens and seconds."""

    texts: list[str]
    new_tokens: int
    seconds: float


def _deadline_criteria(should_stop: Callable[[], bool]) -> Any:
    """A transformers StoppingCriteria that ends every row once ``should_stop()``."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Deadline(StoppingCriteria):  # type: ignore[misc]
        hit = False

        def __call__(self, input_ids: torch.Tensor, scores: Any, **_: Any) -> torch.Tensor:
            stop = bool(should_stop())
            self.hit = self.hit or stop
            return torch.full((input_ids.shape[0],), stop, dtype=torch.bool,
                              device=input_ids.device)

    criterion = Deadline()
    return criterion, StoppingCriteriaList([criterion])


class CausalLM:
    """A loaded tokenizer + AutoModelForCausalLM pair, placed on one device."""

    def __init__(self, name_or_path: str, placement: Placement | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.name = name_or_path
        self.placement = placement or Placement()
        local = Path(name_or_path).exists()
        try:
            # never run a model repository's own Python (auto_map): weights and config only
            with MODEL_BUILD_LOCK:  # see nexus_common.loading
                tokenizer = AutoTokenizer.from_pretrained(
                    name_or_path, local_files_only=local, trust_remote_code=False)
                model = AutoModelForCausalLM.from_pretrained(
                    name_or_path, local_files_only=local, dtype=self.placement.torch_dtype(),
                    trust_remote_code=False).to(self.placement.device)
        except (OSError, ValueError, KeyError) as exc:
            where = "the local path" if local else "the Hugging Face Hub id"
            raise ModelLoadError(
                f"could not load generation model {name_or_path!r} ({where}): "
                f"{str(exc).strip().rstrip('.')}. Use a "
                "causal LM's Hub id or a local folder with its config, weights and "
                "tokenizer; a Hub id needs network access on first use (HF_HUB_OFFLINE "
                "must not be set) unless the model is already in the HF cache") from exc
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ModelLoadError(f"{name_or_path!r}: the tokenizer has neither a pad "
                                     "nor an end-of-text token, so prompts cannot be batched")
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.model = model
        self.model.eval()
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self.context = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None

    def render(self, prompt: str) -> str:
        """The text the model sees: a one-turn chat when the tokenizer has a template."""
        if not self.chat:
            return prompt
        return str(self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False))

    def token_counts(self, prompts: list[str]) -> list[int]:
        """How many tokens each prompt takes once rendered."""
        encoded = self.tokenizer([self.render(p) for p in prompts],
                                 add_special_tokens=not self.chat)
        return [len(ids) for ids in encoded["input_ids"]]

    def complete_batch(self, prompts: list[str], *, max_new_tokens: int, temperature: float,
                       should_stop: Callable[[], bool] | None = None) -> Batch:
        """One completion per prompt (the new text only): greedy at temperature 0, else
        sampled from torch's current RNG. Raises :class:`GenerationStopped` (with no
        texts) when ``should_stop`` turned true while generating."""
        import torch

        inputs = self.tokenizer([self.render(p) for p in prompts], return_tensors="pt",
                                padding=True, add_special_tokens=not self.chat)
        inputs = inputs.to(self.placement.device)
        options: dict[str, Any] = {"max_new_tokens": max_new_tokens,
                                   "pad_token_id": self.tokenizer.pad_token_id}
        if temperature == 0:
            options.update(do_sample=False)
        else:
            options.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        deadline = None
        if should_stop is not None:
            deadline, options["stopping_criteria"] = _deadline_criteria(should_stop)
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**inputs, **options)
        seconds = time.perf_counter() - start
        if deadline is not None and deadline.hit:
            raise GenerationStopped([None] * len(prompts))
        new = out[:, inputs["input_ids"].shape[1]:]
        new_tokens = int((new != self.tokenizer.pad_token_id).sum())
        texts = [str(t) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return Batch(texts, new_tokens, seconds)


class GenerateExecutor:
    """One completion per prompt, prompts batched ``batch_size`` at a time."""

    kind = SubtaskKind.GENERATE

    def __init__(self, models: ModelCache, default_model: str | None = None,
                 batch_size: int = 8, placement: Placement | None = None) -> None:
        self.models = models
        self.default_model = default_model or DEFAULT_GENERATE_MODEL
        self.batch_size = batch_size
        self.placement = placement or Placement()

    def load(self, name: str) -> CausalLM:
        """The model ``name`` from the cache, loading it on first use."""
        return self.models.get(f"causal-lm:{name}", lambda: CausalLM(name, self.placement))

    def run(self, payload: GeneratePayload, ctx: ExecutionContext) -> dict[str, Any]:
        """Return ``{"completions": [...], "model", "chat_template", "new_tokens",
        "tokens_per_s", "device", "dtype"}``."""
        import torch

        name = payload.model or self.default_model
        lm = self.load(name)
        self._check_lengths(lm, payload)
        # longest first: rows of a batch have similar lengths, so little padding
        order = sorted(range(len(payload.prompts)), key=lambda i: -len(payload.prompts[i]))
        texts: list[str | None] = [None] * len(order)
        new_tokens, seconds = 0, 0.0
        sampling = payload.temperature != 0
        lock = _SAMPLING_LOCK if sampling else threading.Lock()
        cuda = [torch.device(self.placement.device).index or 0] if self.placement.is_cuda \
            else []
        with lock, torch.random.fork_rng(devices=cuda, enabled=sampling):
            if sampling:
                torch.manual_seed(payload.seed)
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                if ctx.out_of_time():
                    self._stopped(ctx, texts, name)
                try:
                    batch = lm.complete_batch([payload.prompts[i] for i in rows],
                                              max_new_tokens=payload.max_new_tokens,
                                              temperature=payload.temperature,
                                              should_stop=ctx.out_of_time)
                except GenerationStopped:
                    self._stopped(ctx, texts, name)
                for i, text in zip(rows, batch.texts, strict=True):
                    texts[i] = text
                new_tokens += batch.new_tokens
                seconds += batch.seconds
        logger.info("subtask %s: %d prompts, %d new tokens in %.2fs with %s on %s",
                    ctx.subtask_id, len(order), new_tokens, seconds, name,
                    self.placement.device)
        return {"completions": texts, "model": name, "chat_template": lm.chat,
                "new_tokens": new_tokens,
                "tokens_per_s": round(new_tokens / seconds, 2) if seconds > 0 else None,
                "device": self.placement.device, "dtype": self.placement.dtype}

    @staticmethod
    def _check_lengths(lm: CausalLM, payload: GeneratePayload) -> None:
        if lm.context is None:
            return
        room = lm.context - payload.max_new_tokens
        for i, count in enumerate(lm.token_counts(payload.prompts)):
            if count > room:
                raise ValueError(
                    f"prompt {i} is {count} tokens and max_new_tokens is "
                    f"{payload.max_new_tokens}, but {lm.name} reads at most {lm.context} "
                    "tokens in all: shorten the prompt or lower max_new_tokens")

    @staticmethod
    def _stopped(ctx: ExecutionContext, texts: list[str | None], name: str) -> NoReturn:
        done = sum(t is not None for t in texts)
        raise SubtaskTimedOut(
            f"generation ran past the subtask's {ctx.timeout_s:g}s timeout after {done} of "
            f"{len(texts)} prompts: raise timeout_s, send fewer prompts per subtask or lower "
            "max_new_tokens",
            {"completions": texts, "model": name, "done": done})
