"""Model loading, LoRA, the tiny-model factory, generation and the one log-prob function."""

from alignkit.models.generation import generate
from alignkit.models.loading import LoraSettings, apply_lora, is_lora, load_model, load_tokenizer, save_model
from alignkit.models.logprobs import LogProbs, logprobs_from_logits, model_logits, sequence_logprobs
from alignkit.models.tiny import build_tiny_model, tiny_llama_config, train_tokenizer

__all__ = [
    "LogProbs", "LoraSettings", "apply_lora", "build_tiny_model", "generate", "is_lora", "load_model",
    "load_tokenizer", "logprobs_from_logits", "model_logits", "save_model", "sequence_logprobs",
    "tiny_llama_config", "train_tokenizer",
]
