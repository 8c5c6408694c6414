"""The ``alignkit cai`` and ``alignkit ai-label`` stages: configs, input reading, backend choice.

A backend is either a local model (a folder, or ``tiny``) or, when ``backend_url`` is set, an
OpenAI-compatible endpoint serving ``model``; the API key is read from the environment variable
named by ``api_key_env`` so it never lands in a config file. Endpoint answers are cached (by
default next to the output), so rerunning a stage makes no HTTP calls.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from alignkit.ai.backend import ChatBackend, LocalBackend
from alignkit.ai.cai import run_sl_cai, write_cai_outputs
from alignkit.ai.config import AILabelConfig, BackendSettings, CAIConfig
from alignkit.ai.constitution import load_constitution
from alignkit.ai.labeling import AIPreferenceLabeler, preference_records, route_low_confidence
from alignkit.ai.openai_backend import OpenAIBackend
from alignkit.data.io import DataError, read_jsonl_objects, read_records, write_records
from alignkit.models.loading import load_model

__all__ = [
    "AILabelConfig",
    "BackendSettings",
    "CAIConfig",
    "make_backend",
    "read_pairs_to_label",
    "read_prompts",
    "run_ai_label",
    "run_cai",
]

log = logging.getLogger(__name__)


def make_backend(settings: BackendSettings, default_cache: Path) -> ChatBackend:
    if settings.backend_url:
        return OpenAIBackend(
            settings.backend_url,
            api_key=os.environ.get(settings.api_key_env, "EMPTY"),
            model=settings.model,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
            concurrency=settings.concurrency,
            cache_dir=settings.cache_dir or default_cache,
            top_logprobs=settings.top_logprobs,
            progress=settings.progress,
        )
    model, tokenizer = load_model(settings.model, allow_download=settings.allow_download, dtype=settings.dtype)
    return LocalBackend(model, tokenizer, progress=settings.progress)


def _jsonl_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    return read_jsonl_objects(path)


def read_prompts(path: Path) -> list[str]:
    """Prompts from a ``.txt`` file (one per line) or JSONL rows with a string ``prompt``."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    prompts = []
    for i, row in _jsonl_rows(path):
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(path, i, "prompt", "a non-empty string")
        prompts.append(prompt)
    return prompts


def read_pairs_to_label(path: Path) -> list[dict[str, Any]]:
    """Pairs to label: JSONL rows with ``prompt`` and ``response_a``/``response_b`` (or ``chosen``/``rejected``)."""
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        return read_records(path, kind="pair").records
    pairs = []
    for i, row in _jsonl_rows(path):
        names = ("response_a", "response_b") if "response_a" in row or "response_b" in row else ("chosen", "rejected")
        for name in ("prompt", *names):
            value = row.get(name)
            if not isinstance(value, str) or not value.strip():
                if name == "prompt" and isinstance(value, list) and value:
                    continue  # a conversation prompt (message list) is fine
                raise DataError(
                    path, i, name, "a non-empty string (a pair needs prompt and response_a/response_b or chosen/rejected)"
                )
        pairs.append(row)
    return pairs


def run_cai(config: CAIConfig) -> dict[str, Path]:
    prompts = read_prompts(config.prompts)[: config.limit]
    constitution = load_constitution(config.constitution)
    backend = make_backend(config, config.output / "cache")
    traces = run_sl_cai(
        backend,
        prompts,
        constitution,
        rounds=config.rounds,
        seed=config.seed,
        max_tokens=config.max_tokens,
        temperature=config.temperature,
    )
    paths = write_cai_outputs(traces, config.output)
    (config.output / "config.json").write_text(config.model_dump_json(indent=2))
    return paths


def run_ai_label(config: AILabelConfig) -> dict[str, Any]:

    pairs = read_pairs_to_label(config.pairs)
    constitution = load_constitution(config.constitution)
    if config.criterion != "all":
        constitution = constitution.only(config.criterion)
    cache = config.output.with_name(config.output.name + ".cache")
    backend = make_backend(config, cache)
    labeler = AIPreferenceLabeler(
        backend,
        constitution,
        seed=config.seed,
        swap_positions=config.swap_positions,
        chain_of_thought=config.chain_of_thought,
        cot_max_tokens=config.cot_max_tokens,
    )
    records = preference_records(labeler.label(pairs))
    needs_human: list[dict[str, Any]] = []
    if config.review_threshold is not None:
        records, needs_human = route_low_confidence(records, config.review_threshold)
        write_records(config.output.with_name(config.output.stem + ".needs_human.jsonl"), needs_human)
    write_records(config.output, records)
    return {"labelled": len(records), "needs_human": len(needs_human), "input": len(pairs)}
