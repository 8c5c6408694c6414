"""Loading, adapting and saving Hugging Face causal language models.

``name_or_path`` is a local folder, a hub id (only with ``allow_download=True``: alignkit never
touches the network unless asked) or ``"tiny"``, the built-in tiny model made in-process.

LoRA chains. A folder may hold a ``peft`` adapter instead of full weights (an SFT run with
``--lora`` and no ``--merge-lora``). :func:`load_model` loads its base (recursively: the base may
itself be an adapter folder), applies the adapter and *merges* it, so the model that comes back
is the fine-tuned model: a DPO/KTO/PPO run with ``--lora`` on it then trains a new adapter on top,
and its ``adapter`` reference (the new adapter switched off) is the SFT model, not the original
base. :func:`save_model` records the base of an unmerged adapter as an absolute path (or keeps a
hub id); a base with no folder of its own (``"tiny"``) is saved next to the adapter in
``base_model/``, so the output loads from any working directory.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import torch
from accelerate import PartialState
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from alignkit.data.chat import ensure_chat_template
from alignkit.data.errors import DataError
from alignkit.models.config import LoraSettings
from alignkit.models.tiny import build_tiny_model

log = logging.getLogger(__name__)

TINY = "tiny"
ADAPTER_CONFIG = "adapter_config.json"
BASE_DIR = "base_model"


def _dtype(name: str) -> torch.dtype | str:
    return "auto" if name == "auto" else getattr(torch, name)


def _torch_dtype(name: str) -> torch.dtype:
    return torch.float32 if name == "auto" else getattr(torch, name)


def _attn(attn_implementation: str | None) -> dict[str, Any]:
    return {} if attn_implementation is None else {"attn_implementation": attn_implementation}


@contextmanager
def model_folder_errors(path: str | Path) -> Iterator[None]:
    """A local folder that is not a loadable model is bad input (``DataError``), not a crash."""
    try:
        yield
    except (OSError, ValueError, SafetensorError) as err:
        if not Path(path).exists() or isinstance(err, DataError):
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        expected = "a model folder saved by save_pretrained (config.json + weights)"
        raise DataError(path, None, "model", expected, seen=first) from err


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute activations in backward (non-reentrant, so frozen embeddings under LoRA still work)."""
    hf: Any = getattr(model, "module", model)
    hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    hf.config.use_cache = False  # a KV cache is useless (and warned about) while checkpointing


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
    attn_implementation: str | None = None,
) -> tuple[torch.nn.Module, Any]:
    """Return ``(model, tokenizer)``; ``tiny_texts`` trains the tiny model's tokenizer."""
    if name_or_path == TINY:
        tiny: Any
        tiny, tiny_tokenizer = build_tiny_model(texts=tiny_texts, seed=seed)
        if attn_implementation is not None:
            tiny.set_attn_implementation(attn_implementation)
        return tiny.to(_torch_dtype(dtype)), tiny_tokenizer
    if not allow_download and not Path(name_or_path).exists():
        raise FileNotFoundError(f"model '{name_or_path}' is not a local folder; pass --allow-download to fetch it from the hub")
    if is_adapter_folder(name_or_path):
        return load_merged_adapter(
            Path(name_or_path), allow_download=allow_download, dtype=dtype, attn_implementation=attn_implementation
        )
    tokenizer = load_tokenizer(name_or_path, allow_download)
    with model_folder_errors(name_or_path):
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, local_files_only=not allow_download, dtype=_dtype(dtype), **_attn(attn_implementation)
        )
    if Path(name_or_path).exists():
        model.config._name_or_path = model.name_or_path = str(Path(name_or_path).resolve())  # an adapter records it
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def is_adapter_folder(path: str | Path) -> bool:
    """A ``peft`` adapter folder: ``adapter_config.json`` and no full ``config.json``."""
    return (Path(path) / ADAPTER_CONFIG).exists() and not (Path(path) / "config.json").exists()


def adapter_base(folder: Path) -> str:
    """The base an adapter folder was trained on, as a loadable source; errors say what was looked for.

    ``base_model_name_or_path`` may be absolute, relative to the working directory it was saved
    from (older outputs), relative to the adapter folder, or a hub id.
    """
    config_path = folder / ADAPTER_CONFIG
    try:
        base = json.loads(config_path.read_text()).get("base_model_name_or_path")
    except (OSError, ValueError) as err:
        raise DataError(config_path, None, None, "a peft adapter config (JSON)", seen=str(err).splitlines()[0]) from err
    if not base:
        raise DataError(
            config_path,
            None,
            "base_model_name_or_path",
            "the base model's folder or hub id (an adapter cannot be loaded without its base)",
            seen="nothing",
        )
    candidates = [Path(base), folder / base] if not Path(base).is_absolute() else [Path(base)]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate.resolve())
    looked = ", ".join(f"'{c}'" for c in dict.fromkeys(str(c.absolute()) for c in candidates))
    return _hub_or_error(base, config_path, looked)


def _hub_or_error(base: str, config_path: Path, looked: str) -> str:
    looks_like_hub_id = not base.startswith((".", "/", "~")) and base.count("/") <= 1 and "\\" not in base
    if looks_like_hub_id:
        return base  # load_model then needs --allow-download, and says so
    raise DataError(
        config_path,
        None,
        "base_model_name_or_path",
        "an existing base-model folder (looked for " + looked + ")",
        seen=f"'{base}'",
    )


def load_merged_adapter(
    folder: Path, *, allow_download: bool = False, dtype: str = "float32", attn_implementation: str | None = None
) -> tuple[torch.nn.Module, Any]:
    """Base model (itself possibly an adapter: chains resolve recursively) + this adapter, merged."""
    base = adapter_base(folder)
    if not allow_download and not Path(base).exists():
        raise DataError(
            folder / ADAPTER_CONFIG,
            None,
            "base_model_name_or_path",
            "a local base-model folder, or --allow-download to fetch the hub id",
            seen=f"'{base}'",
        )
    model, base_tokenizer = load_model(base, allow_download=allow_download, dtype=dtype, attn_implementation=attn_implementation)
    tokenizer = load_tokenizer(str(folder)) if (folder / "tokenizer_config.json").exists() else base_tokenizer
    with model_folder_errors(folder):
        merged: Any = PeftModel.from_pretrained(cast(Any, model), str(folder)).merge_and_unload()
    # A new adapter on top records this folder as its base (peft reads the instance's name_or_path).
    merged.config._name_or_path = merged.name_or_path = str(folder.resolve())
    log.info("loaded LoRA adapter %s on base %s (merged)", folder, base)
    return merged, tokenizer


def load_reward_model(
    name_or_path: str,
    *,
    allow_download: bool = False,
    dtype: str = "float32",
    tiny_texts: Iterable[str] = (),
    seed: int = 0,
    attn_implementation: str | None = None,
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
            if is_adapter_folder(name_or_path):  # e.g. a LoRA SFT output: merge, then read it as a classifier
                merged, tokenizer = load_merged_adapter(Path(name_or_path), allow_download=allow_download, dtype=dtype)
                cast(Any, merged).save_pretrained(tmp)
                path, local_only = tmp, True
            else:
                tokenizer = load_tokenizer(name_or_path, allow_download)
                path, local_only = name_or_path, not allow_download
        with torch.random.fork_rng(devices=[]), model_folder_errors(name_or_path if path != tmp else tmp):
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(
                path,
                num_labels=1,
                local_files_only=local_only,
                dtype=_dtype(dtype),
                **_attn(attn_implementation),
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
    """Save so that ``transformers`` (or ``peft`` for an unmerged adapter) loads it back.

    Under several processes only the main one writes (the others wait), so ranks never write the
    same files at once.
    """
    output = Path(output)
    state = PartialState()
    if state.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        hf: Any = model  # a transformers/peft model: its methods are not in torch.nn.Module's type
        if is_lora(hf) and merge_lora:
            hf = hf.merge_and_unload()
        if is_lora(hf):
            _record_base(hf, output, tokenizer)
        hf.save_pretrained(output)
        tokenizer.save_pretrained(output)
    state.wait_for_everyone()
    return output


def _record_base(model: Any, output: Path, tokenizer: Any) -> None:
    """Point every adapter's ``base_model_name_or_path`` at something loadable from anywhere.

    A local base becomes an absolute path; a hub id stays; a base with no folder (the in-process
    tiny model) is saved to ``output/base_model`` first.
    """
    for config in model.peft_config.values():
        base = config.base_model_name_or_path
        if base and Path(base).exists():
            config.base_model_name_or_path = str(Path(base).resolve())
        elif not base:  # rare (tiny models): a full copy of the weights, once
            plain = copy.deepcopy(model).unload()
            plain.save_pretrained(output / BASE_DIR)
            tokenizer.save_pretrained(output / BASE_DIR)
            config.base_model_name_or_path = str((output / BASE_DIR).resolve())


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
