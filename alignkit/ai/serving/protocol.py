"""The OpenAI wire format ``alignkit serve`` speaks: request bodies, errors, responses and stream chunks.

Kept apart from the decode loop so the shapes can be read (and checked against the ``openai``
client) in one place. Errors always have OpenAI's shape ``{"error": {"message", "type", "param",
"code"}}``: the official client shows ``message``, so a bad field says which field and why instead
of FastAPI's bare "422". Validation failures are 400 (``BadRequestError``), as OpenAI answers them.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alignkit.ai.serving.engine import Delta


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def validation_error(err: ValidationError) -> APIError:
    """The first pydantic error as a 400 naming the field (``param``) and the problem."""
    first = err.errors()[0]
    param = ".".join(str(p) for p in first.get("loc", ())) or None
    message = f"{param}: {first.get('msg', 'invalid value')}" if param else str(first.get("msg", "invalid request"))
    return APIError(400, message, param=param, code="invalid_value")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant"]
    content: str | list[dict[str, Any]]

    @field_validator("content")
    @classmethod
    def _text_parts(cls, value: Any) -> str:
        """OpenAI clients may send content as parts ([{"type": "text", "text": ...}]); keep the text."""
        if isinstance(value, str):
            return value
        texts = [part.get("text", "") for part in value if part.get("type") == "text"]
        if len(texts) != len(value):
            raise ValueError("only text content parts are supported")
        return "".join(texts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")  # unknown OpenAI options are ignored, not fatal
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    n: int = Field(1, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: Any) -> Any:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def stops(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return tuple(s for s in stops if s)


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0)


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for completions
    logprobs: int | None = Field(None, ge=0)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("at least one prompt")
        return value


def parse(model: type[BaseModel], raw: bytes) -> Any:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise APIError(400, f"the request body is not valid JSON: {err}", code="invalid_json") from err
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise validation_error(err) from err


# ---------------------------------------------------------------------- responses


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "offset"}


def chat_logprobs(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"content": [_public(e) for e in entries]}


def completion_logprobs(entries: list[dict[str, Any]], base_offset: int = 0) -> dict[str, Any]:
    """The legacy completions shape: parallel lists, alternatives as ``{token: logprob}`` maps."""
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs", [])} for e in entries],
        "text_offset": [base_offset + int(e.get("offset", 0)) for e in entries],
    }


class Response:
    """Accumulates one request's deltas into the final body, or renders them as stream chunks."""

    def __init__(self, kind: Literal["chat", "completion"], model: str, choices: int, logprobs: bool) -> None:
        self.kind, self.model, self.logprobs = kind, model, logprobs
        self.id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.texts = [""] * choices
        self.entries: list[list[dict[str, Any]]] = [[] for _ in range(choices)]
        self.finish: list[str | None] = [None] * choices
        self.started = [False] * choices

    def add(self, delta: Delta) -> None:
        self.texts[delta.index] += delta.text
        self.entries[delta.index].extend(delta.entries)
        if delta.finish is not None:
            self.finish[delta.index] = delta.finish

    def _object(self, chunk: bool) -> str:
        if self.kind == "completion":
            return "text_completion"
        return "chat.completion.chunk" if chunk else "chat.completion"

    def body(self, usage: dict[str, int]) -> dict[str, Any]:
        choices = []
        for i, text in enumerate(self.texts):
            if self.kind == "chat":
                choices.append(
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": self.finish[i],
                        "logprobs": chat_logprobs(self.entries[i]) if self.logprobs else None,
                    }
                )
            else:
                choices.append(
                    {
                        "index": i,
                        "text": text,
                        "finish_reason": self.finish[i],
                        "logprobs": completion_logprobs(self.entries[i]) if self.logprobs else None,
                    }
                )
        return {
            "id": self.id,
            "object": self._object(chunk=False),
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage,
        }

    def chunks(self, delta: Delta) -> list[dict[str, Any]]:
        """Stream chunks for one delta (a chat stream opens each choice with the assistant role)."""
        out = []
        i = delta.index
        if self.kind == "chat":
            if not self.started[i]:
                self.started[i] = True
                out.append(
                    self._chunk(
                        {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                    )
                )
            if delta.text or delta.entries:
                logprobs = chat_logprobs(delta.entries) if self.logprobs else None
                out.append(
                    self._chunk({"index": i, "delta": {"content": delta.text}, "logprobs": logprobs, "finish_reason": None})
                )
            if delta.finish is not None:
                out.append(self._chunk({"index": i, "delta": {}, "logprobs": None, "finish_reason": delta.finish}))
        else:
            if delta.text or delta.entries or delta.finish is not None:
                logprobs = completion_logprobs(delta.entries) if self.logprobs else None
                out.append(self._chunk({"index": i, "text": delta.text, "logprobs": logprobs, "finish_reason": delta.finish}))
        return out

    def _chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": self._object(chunk=True),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }

    def usage_chunk(self, usage: dict[str, int]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": self._object(chunk=True),
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()
