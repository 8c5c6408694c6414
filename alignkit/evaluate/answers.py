"""Answers to evaluation prompts from local models, OpenAI-compatible endpoints or files, cached by content.

A source is a model folder (answered here through :class:`~alignkit.ai.backend.LocalBackend`),
an endpoint ``http(s)://host/v1#model`` (:class:`~alignkit.ai.openai_backend.OpenAIBackend`) or
``file:answers.jsonl`` (answers someone else produced, matched by prompt ``id`` or text). Each
answer is stored in an :class:`~alignkit.ai.cache.RequestCache` under the source's fingerprint
(a hash of the folder's bytes, or the endpoint and model name), the messages and the sampling
settings: rerunning an evaluation, or adding a model, generates only what is new.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignkit.ai.backend import LocalBackend
from alignkit.ai.cache import RequestCache
from alignkit.ai.openai_backend import OpenAIBackend
from alignkit.data.chat import prompt_text
from alignkit.data.errors import DataError, describe_value
from alignkit.data.io import read_jsonl_objects
from alignkit.models.loading import load_model


def read_prompts(path: str | Path) -> list[dict[str, Any]]:
    """Prompts JSONL: ``prompt`` (text or a message list), optional ``category`` and ``id``."""
    out: list[dict[str, Any]] = []
    for line, row in read_jsonl_objects(path):
        prompt = row.get("prompt", row.get("instruction"))
        if not (isinstance(prompt, str) and prompt.strip()) and not (isinstance(prompt, list) and prompt):
            raise DataError(path, line, "prompt", "a non-empty string or message list", seen=describe_value(prompt))
        out.append({"id": str(row.get("id", len(out))), "prompt": prompt, "category": str(row.get("category", "all"))})
    return out


def _messages(prompt: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


# --------------------------------------------------------------------------------- sources


def folder_fingerprint(path: Path) -> str:
    """SHA-256 over a model folder's files (names and bytes): the same weights, the same cache entries."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def source_fingerprint(spec: str) -> str:
    """What identifies a source's answers: the endpoint and model name, or a hash of the model folder."""
    if spec.startswith(("http://", "https://")):
        url, _, model = spec.partition("#")
        return f"endpoint:{url}#{model or 'default'}"
    path = Path(spec)
    if not path.is_dir():
        raise DataError(spec, None, None, "a model folder, or an endpoint http(s)://host/v1#model", seen="no such folder")
    return f"folder:{folder_fingerprint(path)}"


@functools.lru_cache(maxsize=8)  # one load per model per process: answers, checks and the judge share it
def open_backend(spec: str, progress: bool = False, batch_size: int = 16) -> tuple[Any, str]:
    """A ChatBackend and its fingerprint: ``http(s)://host/v1#model`` (key from ``$OPENAI_API_KEY``) or a model folder."""
    fingerprint = source_fingerprint(spec)
    if spec.startswith(("http://", "https://")):
        url, _, model = spec.partition("#")
        backend = OpenAIBackend(url, api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"), model=model or "default")
        return backend, fingerprint
    local, tok = load_model(spec)
    return LocalBackend(local, tok, batch_size=batch_size, progress=progress), fingerprint


def _file_answers(path: Path, prompts: Sequence[dict[str, Any]]) -> list[str]:
    by_id, by_text = {}, {}
    for line, row in read_jsonl_objects(path):
        answer = row.get("response", row.get("output", row.get("answer")))
        if not isinstance(answer, str):
            raise DataError(path, line, "response", "a string (the model's answer)", seen=describe_value(answer))
        if "id" in row:
            by_id[str(row["id"])] = answer
        if "prompt" in row:
            by_text[prompt_text(row["prompt"])] = answer
    out = []
    for p in prompts:
        answer = by_id.get(p["id"], by_text.get(prompt_text(p["prompt"])))
        if answer is None:
            raise DataError(path, None, "id", f"an answer for prompt id {p['id']!r}", seen="none")
        out.append(answer)
    return out


def answer_all(
    sources: dict[str, str],
    prompts: Sequence[dict[str, Any]],
    cache: RequestCache,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    progress: bool = False,
    batch_size: int = 16,
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Every model's answer to every prompt, from the cache where possible; also new answers per model."""
    answers: dict[str, list[str]] = {}
    generated: dict[str, int] = {}
    for name, spec in sources.items():
        if spec.startswith("file:"):
            answers[name], generated[name] = _file_answers(Path(spec[5:]), prompts), 0
            continue
        fingerprint = source_fingerprint(spec)
        keys = [
            {
                "kind": "answer",
                "source": fingerprint,
                "messages": _messages(p["prompt"]),
                "max_tokens": max_new_tokens,
                "temperature": temperature,
                "seed": seed,
            }
            for p in prompts
        ]
        got: list[str | None] = [cache.get(k) for k in keys]
        missing = [i for i, g in enumerate(got) if g is None]
        if missing:
            backend, _ = open_backend(spec, progress, batch_size)
            new = backend.chat(
                [keys[i]["messages"] for i in missing], max_tokens=max_new_tokens, temperature=temperature, seed=seed
            )
            for i, text in zip(missing, new):
                cache.put(keys[i], text)
                got[i] = text
        answers[name] = [str(g) for g in got]
        generated[name] = len(missing)
    return answers, generated
