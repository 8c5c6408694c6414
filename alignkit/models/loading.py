"""Loading, adapting and saving Hugging Face causal language models.

``name_or_path`` is a local folder, a hub id (only with ``allow_download=True``: alignkit never
touches the network unless asked) or ``"tiny"``, the built-in tiny model made in-process.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from alignkit.data.chat import ensure_chat_template
from alignkit.models.config import LoraSettings
from alignkit.models.tiny import build_tiny_model

log = logging.getLogger(__name__)

TINY = "tiny"


def _dtype(name: str) -> torch.dtype | str:
    return "auto" if name == "auto" else getattr(torch, name)


def load_tokenizer(name_or_path: str, allow_download: bool = False) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=not allow_download)
    if tokenizer.pad_token is None:
        # Padding never reaches the loss (masks take care of it), so EOS is a safe stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    ensure_chat_template(tokenizer)
    return tokenizer


def load_model(
    name_or_path: str,
    *,
    allow_download: bool = False,
    dtype: str = "float32",
    tiny_texts: Iterable[str] = (),
    seed: int = 0,
) -> tuple[torch.nn.Module, Any]:
    """Return ``(model, tokenizer)``; ``tiny_texts`` trains the tiny model's tokenizer."""
    if name_or_path == TINY:
        return build_tiny_model(texts=tiny_texts, seed=seed)
    if not allow_download and not Path(name_or_path).exists():
        raise FileNotFoundError(f"model '{name_or_path}' is not a local folder; pass --allow-download to fetch it from the hub")
    tokenizer = load_tokenizer(name_or_path, allow_download)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, local_files_only=not allow_download, dtype=_dtype(dtype))
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_reward_model(
    name_or_path: str, *, allow_download: bool = False, dtype: str = "float32", tiny_texts: Iterable[str] = (), seed: int = 0
) -> tuple[torch.nn.Module, Any]:
    """A causal LM (or a saved reward model) with a one-output sequence-classification head.

    ``"tiny"`` builds the tiny causal LM, saves it to a temporary folder and loads it back through
    ``AutoModelForSequenceClassification`` — the same path a real checkpoint takes. The new head
    is initialised from ``seed`` without touching the global RNG.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if name_or_path == TINY:
            base, tokenizer = build_tiny_model(tiny_texts, seed=seed)
            base.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            path, local_only = tmp, True
        else:
            if not allow_download and not Path(name_or_path).exists():
                raise FileNotFoundError(
                    f"model '{name_or_path}' is not a local folder; pass --allow-download to fetch it from the hub"
                )
            tokenizer = load_tokenizer(name_or_path, allow_download)
            path, local_only = name_or_path, not allow_download
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(
                path,
                num_labels=1,
                local_files_only=local_only,
                dtype="auto" if dtype == "auto" else getattr(torch, dtype),
            )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def apply_lora(model: torch.nn.Module, settings: LoraSettings) -> torch.nn.Module:
    """Wrap ``model`` with a trainable LoRA adapter; the base weights stay frozen.

    With an adapter, the reference model of DPO/KTO/PPO is the same module with the adapter
    disabled (see :func:`reference_forward`), so no second copy is held in memory.
    """
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def is_lora(model: torch.nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def save_model(model: torch.nn.Module, tokenizer: Any, output: str | Path, merge_lora: bool = False) -> Path:
    """Save so that ``transformers`` (or ``peft`` for an unmerged adapter) loads it back."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    hf: Any = model  # a transformers/peft model: its methods are not in torch.nn.Module's type
    if is_lora(hf) and merge_lora:
        hf = hf.merge_and_unload()
    hf.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return output


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
