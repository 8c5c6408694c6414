"""Configs of the AI-feedback commands (``serve``, ``cai``, ``ai-label``), importable without torch.

The CLI builds its flags from these classes; the code that runs them (backends, the server) loads
models and so lives in :mod:`alignkit.ai.runner` and :mod:`alignkit.ai.server`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator


class ServeLimits(BaseModel):
    """What one request may ask of ``alignkit serve`` (the server's own protection; OpenAI's caps where it has them)."""

    max_request_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body in bytes; bigger bodies get 413 before they are read."
    )
    max_tokens_limit: int = Field(4096, ge=1, description="Largest max_tokens a request may ask for (400 above it).")
    default_max_tokens: int = Field(256, ge=1, description="max_tokens when a request gives none.")
    max_top_logprobs: int = Field(20, ge=0, description="Largest top_logprobs (chat) / logprobs (completions); OpenAI's is 20.")
    max_n: int = Field(8, ge=1, description="Largest n (choices per request).")
    max_batch_size: int = Field(32, ge=1, description="Sequences decoded together in one step (continuous batching).")
    max_queue: int = Field(1024, ge=1, description="Sequences waiting for a batch slot; beyond it requests get 429.")


class _ServedModel(BaseModel):
    model: str = Field("tiny", description="Local model folder, a hub id (with --allow-download) or 'tiny'.")
    model_name: str | None = Field(None, description="Name reported by /v1/models (default: the --model value).")
    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 exposes it to the network.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key clients must send as 'Authorization: Bearer KEY'."
    )
    dtype: str = Field("float32", description="Weights dtype: float32, bfloat16, float16 or auto.")
    allow_download: bool = Field(False, description="Allow fetching the model from the Hugging Face hub.")
    tiny_texts: Path | None = Field(None, description="Text file to train the tiny model's tokenizer on (model 'tiny' only).")
    seed: int = Field(0, description="Seed for building the tiny model.")
    log_requests: Path | None = Field(
        None, description="Append one JSONL row per answered request (OpenAI request and response bodies), for monitoring."
    )


class _ServeGuardFields(BaseModel):
    guard: str | None = Field(
        None,
        description="Guard screening requests and answers: a folder from `alignkit safety train-guard`, or "
        "'judge:MODEL' (a causal LM folder or, with --guard-backend-url, an endpoint's model, in Llama Guard's format).",
    )
    guard_on: str = Field("input,output", description="What the guard screens: input, output, or input,output.")

    @field_validator("guard_on")
    @classmethod
    def _stages(cls, value: str) -> str:
        stages = {part.strip() for part in value.split(",") if part.strip()}
        if not stages or stages - {"input", "output"}:
            raise ValueError(f"'input', 'output' or 'input,output', got {value!r}")
        return value

    guard_action: Literal["refuse", "rewrite"] = Field(
        "refuse",
        description="refuse: flagged text is answered with --guard-refusal (finish_reason content_filter); rewrite: "
        "answer a flagged request under a safety instruction, regenerate a flagged answer once (refuse if still flagged).",
    )
    guard_refusal: str = Field("I can't help with that.", description="The refusal a flagged request or answer gets.")
    guard_log: Path | None = Field(None, description="Append one JSONL row per flag (stage, action, categories, text).")
    guard_backend_url: str | None = Field(None, description="OpenAI-compatible base URL of a 'judge:MODEL' guard.")
    guard_policy: str = Field("default", description="Policy YAML of a 'judge:MODEL' guard (a classifier carries its own).")
    guard_threshold: float | None = Field(
        None, ge=0, description="Override the guard's thresholds: flag when a score reaches this (judge default 0.5)."
    )


class ServeConfig(_ServeGuardFields, ServeLimits, _ServedModel):
    """Serve a model over an OpenAI-compatible API (the model's fields first, then the limits, then the guard)."""


class RewardServerConfig(BaseModel):
    """Serve an alignkit reward over HTTP in OpenRLHF's remote reward-model protocol (--remote_rm_url)."""

    reward: str = Field(
        description="Reward spec: rm:PATH, sandbox[:FOLDER], python:mod:fn, or a weighted mix 'rm:a,0.2*python:m:f'."
    )
    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 exposes it to the network.")
    port: int = Field(5000, ge=0, le=65535, description="TCP port (OpenRLHF's examples use 5000).")
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest request body in bytes (413 above it).")


class BackendSettings(BaseModel):
    model: str = Field("tiny", description="Local model folder or 'tiny'; with --backend-url, the endpoint's model name.")
    backend_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. http://localhost:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the endpoint's API key.")
    timeout: float = Field(60.0, gt=0, description="Seconds per HTTP request before it is retried.")
    max_retries: int = Field(4, ge=0, description="Retries on 5xx, rate limits and timeouts (exponential backoff).")
    concurrency: int = Field(8, ge=1, description="Concurrent HTTP requests.")
    top_logprobs: int = Field(20, ge=1, description="Top log-probs requested per answer (OpenAI allows up to 20).")
    cache_dir: Path | None = Field(None, description="On-disk request cache (default: next to the output).")
    allow_download: bool = Field(False, description="Allow fetching a local model from the Hugging Face hub.")
    dtype: str = Field("float32", description="Local model dtype.")
    progress: bool = Field(True, description="Show progress bars.")


class CAIConfig(BackendSettings):
    """Supervised Constitutional AI: critique and revise responses to (red-team) prompts."""

    prompts: Path = Field(description="Prompts: JSONL with a 'prompt' field, or a .txt file with one per line.")
    output: Path = Field(description="Folder for traces.jsonl, sft.jsonl and pairs.jsonl.")
    constitution: Path | None = Field(None, description="Constitution YAML (default: the shipped HHH one).")
    rounds: int = Field(1, ge=0, description="Critique/revision rounds per prompt.")
    seed: int = 0
    max_tokens: int = Field(256, ge=1, description="Max tokens per response, critique and revision.")
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature (0 = greedy).")
    limit: int | None = Field(None, ge=1, description="Use only the first N prompts.")


class AILabelConfig(BackendSettings):
    """Label preference pairs with an AI feedback model (RL-CAI / RLAIF soft labels)."""

    pairs: Path = Field(description="JSONL pairs: prompt + response_a/response_b (or chosen/rejected).")
    output: Path = Field(description="JSONL of labelled pairs (chosen/rejected, confidence, margin, principle).")
    constitution: Path | None = Field(None, description="Constitution YAML (default: the shipped HHH one).")
    criterion: Literal["all", "helpfulness", "honesty", "harmlessness"] = Field(
        "all", description="Use only the principles serving this criterion."
    )
    seed: int = 0
    swap_positions: bool = Field(True, description="Judge both presentation orders and average (cancels position bias).")
    chain_of_thought: bool = Field(False, description="Reason before answering; labels clamped to [0.4, 0.6].")
    cot_max_tokens: int = Field(256, ge=1)
    review_threshold: float | None = Field(
        None, ge=0.5, le=1.0, description="Labels below this confidence go to <output>.needs_human.jsonl instead of the output."
    )
