"""Tiny Llama-style models built in-process, for tests, benchmarks and the sandbox.

Tests must never download weights, yet they should exercise the real ``transformers`` code path.
So we train a small byte-level BPE tokenizer with the ``tokenizers`` library on the text at hand
and pair it with a randomly initialised ``LlamaForCausalLM``. Both save and load with
``save_pretrained``/``from_pretrained`` like any hub model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from alignkit.data.chat import DEFAULT_CHAT_TEMPLATE

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

# Fallback text so a tokenizer can be built even from very little data.
_SEED_TEXT = (
    "The quick brown fox jumps over the lazy dog. I don't know. I can't help with that. "
    "Sure, here is the answer. What is the capital of the town? 0123456789"
)


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 512,
    *,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    bos_token: str | None = "<|bos|>",
    eos_token: str = "<|end|>",
    pad_token: str = "<|pad|>",
    chat_template: str | None = DEFAULT_CHAT_TEMPLATE,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (every byte is representable, so nothing is ever <unk>).

    The defaults give the tiny Llama's tokenizer; ``alignkit.models.architectures`` passes each
    real family's own special tokens and chat template instead.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_SEED_TEXT, *texts], trainer=trainer)
    named = {bos_token, eos_token, pad_token}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        additional_special_tokens=[t for t in special_tokens if t not in named],
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def tiny_llama_config(
    vocab_size: int,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: int = 344,
    max_position_embeddings: int = 1024,
    pad_token_id: int | None = 0,
    bos_token_id: int | None = 1,
    eos_token_id: int | None = 2,
) -> LlamaConfig:
    """About 0.9M parameters at the defaults with a 512-token vocabulary."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=False,
        attention_dropout=0.0,
    )


def build_tiny_model(
    texts: Iterable[str] = (),
    vocab_size: int = 512,
    seed: int = 0,
    tokenizer: PreTrainedTokenizerFast | None = None,
    **config_overrides: int,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A fresh tiny model and a tokenizer trained on ``texts`` (or the one given)."""
    tokenizer = tokenizer or train_tokenizer(texts, vocab_size)
    config = tiny_llama_config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **config_overrides,
    )
    # A private generator keeps initialisation reproducible without touching the global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer
