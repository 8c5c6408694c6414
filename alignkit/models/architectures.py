"""Small randomly initialised models of real architectures, each with its own tokenizer and template.

The built-in tiny model is a Llama; bugs that only show on other families (an attention that
ignores ``position_ids``, an end-of-turn token that is not EOS, a template with its own role
names) stay invisible with it. :func:`build_architecture` builds GPT-2, Llama, Qwen2, Gemma-2,
Phi-3 or OPT at any size from ``transformers``' own config classes, with a byte-level BPE tokenizer
(:func:`alignkit.models.tiny.train_tokenizer`) carrying the family's special tokens, a chat template
shaped like the real one, and the ``generation_config`` stop ids the real checkpoint ships
(e.g. Gemma stops at ``<end_of_turn>`` and at ``<eos>``). Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    GPT2Config,
    LlamaConfig,
    OPTConfig,
    Phi3Config,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from alignkit.models.tiny import train_tokenizer


@dataclass(frozen=True)
class Family:
    """A family's tokens and template; ``stop_tokens`` is what its ``generation_config`` stops at."""

    bos: str | None
    eos: str
    pad: str
    stop_tokens: tuple[str, ...]
    template: str | None  # None: no template (base model); alignkit's default is used
    extra_specials: tuple[str, ...] = field(default=())


_LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_GEMMA = (
    "{{ bos_token }}{% for m in messages %}"
    "{% set role = 'model' if m['role'] == 'assistant' else 'user' %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
_PHI3 = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

FAMILIES: dict[str, Family] = {
    "gpt2": Family(bos="<|endoftext|>", eos="<|endoftext|>", pad="<|endoftext|>", stop_tokens=(), template=None),
    "llama": Family(
        bos="<|begin_of_text|>",
        eos="<|end_of_text|>",
        pad="<|finetune_right_pad_id|>",
        stop_tokens=("<|eot_id|>",),
        template=_LLAMA3,
        extra_specials=("<|start_header_id|>", "<|end_header_id|>"),
    ),
    "qwen2": Family(
        bos=None,
        eos="<|endoftext|>",
        pad="<|endoftext|>",
        stop_tokens=("<|im_end|>",),
        template=_CHATML,
        extra_specials=("<|im_start|>",),
    ),
    "gemma2": Family(
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        stop_tokens=("<end_of_turn>",),
        template=_GEMMA,
        extra_specials=("<start_of_turn>",),
    ),
    "phi3": Family(
        bos="<s>",
        eos="<|endoftext|>",
        pad="<|endoftext|>",
        stop_tokens=("<|end|>",),
        template=_PHI3,
        extra_specials=("<|system|>", "<|user|>", "<|assistant|>"),
    ),
    "opt": Family(bos="</s>", eos="</s>", pad="<pad>", stop_tokens=(), template=None),
}


def family_tokenizer(family: str, texts: Iterable[str] = (), vocab_size: int = 512) -> PreTrainedTokenizerFast:
    spec = FAMILIES[family]
    specials = list(dict.fromkeys(t for t in (spec.pad, spec.bos, spec.eos, *spec.stop_tokens, *spec.extra_specials) if t))
    tokenizer = train_tokenizer(
        texts,
        vocab_size,
        special_tokens=specials,
        bos_token=spec.bos,
        eos_token=spec.eos,
        pad_token=spec.pad,
        chat_template=spec.template,
    )
    return tokenizer


def family_config(
    family: str,
    tokenizer: PreTrainedTokenizerFast,
    *,
    hidden: int,
    layers: int,
    heads: int,
    intermediate: int,
    max_positions: int,
) -> PretrainedConfig:
    common: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    head_dim = hidden // heads
    if family == "gpt2":
        return GPT2Config(
            n_embd=hidden, n_layer=layers, n_head=heads, n_inner=intermediate, n_positions=max_positions, resid_pdrop=0.0,
            embd_pdrop=0.0, attn_pdrop=0.0, **common,
        )  # fmt: skip
    if family == "opt":
        return OPTConfig(
            hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, ffn_dim=intermediate,
            word_embed_proj_dim=hidden, max_position_embeddings=max_positions, dropout=0.0, attention_dropout=0.0, **common,
        )  # fmt: skip
    decoder = {
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": max(1, heads // 2),
        "max_position_embeddings": max_positions,
        "attention_dropout": 0.0,
        **common,
    }
    if family == "llama":
        return LlamaConfig(**decoder)
    if family == "qwen2":
        return Qwen2Config(**decoder)
    if family == "gemma2":
        return Gemma2Config(**decoder, head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=max_positions)
    if family == "phi3":
        return Phi3Config(**decoder, resid_pdrop=0.0, embd_pdrop=0.0)
    raise ValueError(f"unknown architecture family '{family}' (known: {', '.join(FAMILIES)})")


def build_architecture(
    family: str,
    texts: Iterable[str] = (),
    *,
    vocab_size: int = 512,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    intermediate: int = 64,
    max_positions: int = 512,
    attn_implementation: str = "sdpa",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """``(model, tokenizer)`` of ``family`` at the given size, randomly initialised from ``seed``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown architecture family '{family}' (known: {', '.join(FAMILIES)})")
    spec = FAMILIES[family]
    tokenizer = family_tokenizer(family, texts, vocab_size)
    config = family_config(
        family,
        tokenizer,
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=intermediate,
        max_positions=max_positions,
    )
    if family == "gemma2" and attn_implementation == "sdpa":
        attn_implementation = "eager"  # transformers has no sdpa path for Gemma-2 (soft-capped attention)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation, dtype=dtype)
    stops = [tokenizer.eos_token_id, *(tokenizer.convert_tokens_to_ids(t) for t in spec.stop_tokens)]
    model.generation_config.eos_token_id = stops if len(stops) > 1 else stops[0]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model, tokenizer
