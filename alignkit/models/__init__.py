"""Model loading, LoRA, the tiny-model factory, generation and the one log-prob function.

Names are re-exported lazily (PEP 562) so that importing a torch-free submodule such as
``alignkit.models.config`` does not load torch; new code imports from the defining module.
"""

from __future__ import annotations

from alignkit.plugins import lazy_exports

_HOME = {
    "LoraSettings": "config",
    "generate": "generation",
    "apply_lora": "loading",
    "is_lora": "loading",
    "load_model": "loading",
    "load_tokenizer": "loading",
    "save_model": "loading",
    "LogProbs": "logprobs",
    "logprobs_from_logits": "logprobs",
    "model_logits": "logprobs",
    "sequence_logprobs": "logprobs",
    "build_tiny_model": "tiny",
    "tiny_llama_config": "tiny",
    "train_tokenizer": "tiny",
}

__all__ = sorted(_HOME)

__getattr__, __dir__ = lazy_exports(__name__, _HOME)
