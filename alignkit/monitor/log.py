"""Reading a log of a deployed model's prompts and answers.

Two row shapes, one JSON object per line:

* plain: ``prompt`` (a string or a TRL message list), the answer in ``response`` (or ``answer`` /
  ``completion``), optionally ``id``, ``model`` and ``contexts`` (the passages a RAG system
  retrieved, a list of strings; with them the judge also checks faithfulness);
* a served request, as an OpenAI-compatible server (``alignkit serve``, vLLM behind a logging
  proxy) can write it: ``request`` (the chat-completions body, with ``messages``) and ``response``
  (the answer body, with ``choices[0].message.content``), optionally ``id``, ``model``, ``time``.

A row that fits neither is a :class:`~alignkit.data.io.DataError` naming file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.data.chat import prompt_text
from alignkit.data.io import DataError, read_jsonl_objects


@dataclass
class LogEntry:
    id: str
    prompt: str
    response: str
    model: str | None = None
    contexts: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _last_user(messages: list[dict[str, Any]]) -> str:
    """The conversation up to the answer, as the judge reads it (one message: just its text)."""
    if len(messages) == 1:
        return str(messages[0].get("content", ""))
    return prompt_text(messages)


def entry_from_row(row: dict[str, Any], path: str | Path = "<memory>", line: int = 0) -> LogEntry:
    rid = str(row.get("id", f"line-{line}"))
    if isinstance(row.get("request"), dict):
        messages = row["request"].get("messages")
        if not isinstance(messages, list) or not messages:
            raise DataError(path, line, "request.messages", f"expected a non-empty message list, saw {messages!r}"[:120])
        body = row.get("response")
        try:
            answer = body["choices"][0]["message"]["content"]  # type: ignore[index]
        except (TypeError, KeyError, IndexError):
            raise DataError(
                path, line, "response", "expected an OpenAI chat-completions body with choices[0].message.content"
            ) from None
        prompt = _last_user(messages)
        model = row.get("model") or row["request"].get("model")
    else:
        raw = row.get("prompt")
        if isinstance(raw, list) and raw:
            prompt = _last_user(raw)
        elif isinstance(raw, str) and raw.strip():
            prompt = raw
        else:
            raise DataError(path, line, "prompt", f"expected a non-empty string or message list, saw {raw!r}"[:120])
        answer = next((row[k] for k in ("response", "answer", "completion") if k in row), None)
        model = row.get("model")
    if not isinstance(answer, str):
        raise DataError(path, line, "response", f"expected the answer as a string, saw {type(answer).__name__}")
    contexts = row.get("contexts") or []
    if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise DataError(path, line, "contexts", "expected a list of passage strings")
    known = {"id", "prompt", "response", "answer", "completion", "model", "contexts", "request"}
    return LogEntry(rid, prompt, answer, model, list(contexts), {k: v for k, v in row.items() if k not in known})


def read_log(path: str | Path) -> list[LogEntry]:
    return [entry_from_row(row, path, line) for line, row in read_jsonl_objects(path)]
