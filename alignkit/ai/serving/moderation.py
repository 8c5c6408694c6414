"""A guard in front of ``alignkit serve`` (``--guard``): flagged input or output is refused or rewritten, and logged.

The hook is small on purpose: it takes any object with ``score(prompts, responses) -> verdicts``
(``flagged``, ``flagged_categories``, ``unsafe``), which is what :mod:`alignkit.safety` guards
are (a trained classifier folder, or ``judge:MODEL`` in Llama Guard's format), without this
layer importing them (``serve`` builds one through a plug-in string). What a client sees follows
OpenAI's moderation: a refused choice carries the refusal text and ``finish_reason
"content_filter"``; the request itself succeeds (HTTP 200), so clients need no new error path.

* ``on``: ``input`` screens the conversation before decoding (a flagged chat request never
  reaches the model), ``output`` screens each choice after decoding (with ``stream`` the answer is
  buffered, screened, then sent as chunks: a guard that has not read the text cannot stop it).
* ``action``: ``refuse`` answers flagged text with the refusal; ``rewrite`` answers a flagged chat
  request with a safety instruction added as a system message (the request's categories named),
  and regenerates a flagged output once under that instruction, keeping the new answer only if it
  passes (else the refusal). ``/v1/completions`` has no conversation to instruct: there
  ``rewrite`` refuses.
* Every flag is one JSONL row in ``log_path`` (id, time, stage, action, categories, P(unsafe), the
  text) and a warning in the server log; ``stats`` counts them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from alignkit.ai.serving.engine import Delta
from alignkit.ai.serving.protocol import Response, sse

log = logging.getLogger(__name__)

REFUSAL = "I can't help with that."
CONTENT_FILTER = "content_filter"  # OpenAI's finish_reason for content its filters removed
SAFETY_INSTRUCTION = (
    "The user's request may involve unsafe content ({categories}). Do not give harmful details: decline the "
    "unsafe part in one sentence and offer safe, general help instead."
)


class Verdict(Protocol):
    flagged: bool
    flagged_categories: list[str]
    unsafe: float


class Scorer(Protocol):
    def score(self, prompts: Sequence[Any], responses: Sequence[Any] | None = None) -> Sequence[Verdict]: ...


@dataclass
class ServeGuard:
    """What ``serve --guard`` screens (``on``), what it does with a flag (``action``) and where flags are logged."""

    guard: Scorer
    on: frozenset[str] = frozenset({"input", "output"})
    action: Literal["refuse", "rewrite"] = "refuse"
    refusal: str = REFUSAL
    log_path: Path | None = None
    stats: dict[str, int] = field(default_factory=lambda: {"input_flagged": 0, "output_flagged": 0, "rewritten": 0})
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.on) - {"input", "output"}
        if unknown or not self.on:
            raise ValueError(f"guard_on: 'input', 'output' or both, got {sorted(self.on)}")
        if self.action not in ("refuse", "rewrite"):
            raise ValueError(f"guard_action must be 'refuse' or 'rewrite', got {self.action!r}")

    def screen_inputs(self, prompts: Sequence[Any]) -> list[Verdict | None]:
        """Per prompt (messages or text): its verdict when input is screened and it is flagged, else None."""
        if "input" not in self.on:
            return [None] * len(prompts)
        return [v if v.flagged else None for v in self.guard.score(list(prompts), None)]

    def screen_outputs(self, prompts: Sequence[Any], texts: Sequence[str]) -> list[Verdict | None]:
        """Per (prompt, output): its verdict when flagged, else None."""
        if not texts:
            return []
        return [v if v.flagged else None for v in self.guard.score(list(prompts), list(texts))]

    @staticmethod
    def instructed(messages: list[dict[str, Any]], verdict: Verdict) -> list[dict[str, Any]]:
        """``messages`` with the safety instruction (naming the flagged categories) as a leading system message."""
        note = SAFETY_INSTRUCTION.format(categories=", ".join(verdict.flagged_categories) or "unspecified")
        return [{"role": "system", "content": note}, *messages]

    def record(self, request_id: str, stage: str, action: str, verdict: Verdict, prompt: Any, text: str | None) -> None:
        """Count a flag, warn, and append its row to ``log_path``."""
        key = "input_flagged" if stage == "input" else "output_flagged"
        row = {
            "id": request_id,
            "time": time.time(),
            "stage": stage,
            "action": action,
            "categories": list(verdict.flagged_categories),
            "unsafe": round(float(verdict.unsafe), 6),
            "prompt": prompt,
            "text": text,
        }
        with self._lock:
            self.stats[key] += 1
            if action == "rewritten":
                self.stats["rewritten"] += 1
            if self.log_path is not None:
                with open(self.log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        log.warning("guard flagged %s of %s (%s): %s", stage, request_id, ",".join(row["categories"]) or "unsafe", action)


def refuse_choice(choice: dict[str, Any], refusal: str) -> None:
    """Turn one OpenAI choice (chat or completion) into the refusal, ``finish_reason`` ``content_filter``."""
    if "message" in choice:
        choice["message"]["content"] = refusal
    else:
        choice["text"] = refusal
    choice["finish_reason"] = CONTENT_FILTER
    choice["logprobs"] = None


def choice_text(choice: dict[str, Any]) -> str:
    return str(choice["message"]["content"] if "message" in choice else choice["text"])


async def replay(
    response: Response, answer: dict[str, Any], kept_entries: Sequence[bool], include_usage: bool
) -> AsyncIterator[bytes]:
    """A screened answer as the stream the client asked for: OpenAI's chunks, then usage (if asked) and ``[DONE]``."""
    for i, choice in enumerate(answer["choices"]):
        entries = response.entries[i] if kept_entries[i] else []
        for chunk in response.chunks(Delta(i, choice_text(choice), entries, choice["finish_reason"])):
            yield sse(chunk)
    if include_usage:
        yield sse(response.usage_chunk(answer["usage"]))
    yield sse("[DONE]")
