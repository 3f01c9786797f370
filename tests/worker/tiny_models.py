"""Tiny causal LMs built here (nothing downloaded), and a Hugging Face cache to hold one.

``tiny_chat_model`` is a 2-layer Llama (the architecture of SmolLM2) whose tokenizer has
a ChatML chat template, like an instruct model's. ``put_in_hub_cache`` lays a model
folder out as the Hub's cache does (``models--org--name/snapshots/<commit>``), so that
``from_pretrained("org/name")`` finds it by id with ``HF_HUB_OFFLINE=1``: the real
loading-by-id code runs without a network.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "The invoice was charged twice this month.",
    "The app crashes when I open the settings page.",
    "Please add a dark mode to the dashboard.",
    "A cat sat on the mat.",
    "user assistant system write three taglines for each product",
]


def tiny_chat_model(path: Path) -> Path:
    """Save a tiny Llama with a chat-templated tokenizer under ``path``; return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>",
                                        eos_token="<|im_end|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=256, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def put_in_hub_cache(cache: Path, repo_id: str, model_dir: Path) -> Path:
    """Copy ``model_dir`` into the HF hub cache at ``cache`` as ``repo_id``'s main revision."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(model_dir, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
