"""``alignkit serve``: any model alignkit loads, behind a small OpenAI-compatible HTTP API.

Why our own server: it lets every tool that speaks the OpenAI protocol (our ``OpenAIBackend``, the
``openai`` client, evaluation harnesses) use a checkpoint fresh out of training, and it lets the
test suite drive the real HTTP path end to end on loopback with a tiny model. For throughput on a
GPU use vLLM; this one decodes one request at a time.

Endpoints: ``GET /v1/models`` and ``POST /v1/chat/completions`` (messages, max_tokens /
max_completion_tokens, temperature, top_p, seed, stop, n=1, logprobs, top_logprobs). Log-probs
are those of the model's raw next-token distribution (temperature 1), as vLLM reports by default,
in the OpenAI shape ``choices[0].logprobs.content[j].top_logprobs``. Unlike OpenAI's cap of 20,
``top_logprobs`` may go up to the vocabulary size.

Sampling uses a private ``torch.Generator`` seeded from the request's ``seed`` (0 if absent), so
equal requests give equal answers and concurrent requests never share RNG state.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from alignkit.ai.config import ServeConfig
from alignkit.data.chat import encode_prompt
from alignkit.models.loading import load_model


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


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # unknown OpenAI options are ignored, not fatal
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    n: int = 1
    stop: str | list[str] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0)


def _token_entry(tokenizer: Any, token_id: int, logprob: float) -> dict[str, Any]:
    text = tokenizer.decode([token_id])
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


class Decoder:
    """Sample one completion token by token, keeping the raw log-probs OpenAI clients expect."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, max_context: int | None = None) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_context = max_context or getattr(model.config, "max_position_embeddings", None)
        # All model work runs on this one thread: one forward at a time (CPU cores are better spent
        # inside torch), and one OpenMP thread team instead of one per web worker thread, which
        # on a small machine made concurrent teams spin against each other (seconds per request).
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alignkit-decode")

    def decode(self, *args: Any, **kwargs: Any) -> tuple[list[int], list[dict[str, Any]], str]:
        return self.worker.submit(self._decode, *args, **kwargs).result()

    @torch.no_grad()
    def _decode(
        self, prompt_ids: list[int], max_tokens: int, temperature: float, top_p: float, seed: int, top_logprobs: int = 0
    ) -> tuple[list[int], list[dict[str, Any]], str]:
        if self.max_context is not None and len(prompt_ids) + max_tokens > self.max_context:
            max_tokens = self.max_context - len(prompt_ids)
            if max_tokens < 1:
                raise ValueError(f"prompt has {len(prompt_ids)} tokens; the model's context is {self.max_context}")
        device = next(self.model.parameters()).device
        generator = torch.Generator(device="cpu").manual_seed(seed)
        eos = self.tokenizer.eos_token_id
        ids: list[int] = []
        entries: list[dict[str, Any]] = []
        finish = "length"
        past = None
        step_input = torch.tensor([prompt_ids], device=device)
        for _ in range(max_tokens):
            out = self.model(input_ids=step_input, past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1].float().cpu()
            logps = torch.log_softmax(logits, -1)
            if temperature == 0:
                token = int(logits.argmax())
            else:
                probs = torch.softmax(logits / temperature, -1)
                if top_p < 1.0:
                    sorted_p, order = probs.sort(descending=True)
                    # Keep the smallest prefix whose mass reaches top_p (always at least one token).
                    drop = sorted_p.cumsum(0) - sorted_p >= top_p
                    sorted_p[drop] = 0.0
                    probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
                token = int(torch.multinomial(probs, 1, generator=generator))
            entry = _token_entry(self.tokenizer, token, float(logps[token]))
            if top_logprobs:
                values, indices = logps.topk(min(top_logprobs, logps.numel()))
                entry["top_logprobs"] = [_token_entry(self.tokenizer, int(i), float(v)) for v, i in zip(values, indices)]
            else:
                entry["top_logprobs"] = []
            entries.append(entry)  # EOS included, so a 1-token request always has a first entry
            if token == eos:
                finish = "stop"
                break
            ids.append(token)
            step_input = torch.tensor([[token]], device=device)
        return ids, entries, finish


def make_app(model: torch.nn.Module, tokenizer: Any, model_name: str = "alignkit", fail_first_n: int = 0) -> Any:
    """The FastAPI app. ``fail_first_n`` answers the first n chat requests with HTTP 500 (for
    testing clients' retries). ``app.state.stats`` counts requests received per endpoint."""
    app = FastAPI(title="alignkit OpenAI-compatible server")
    decoder = Decoder(model, tokenizer)
    app.state.stats = {"requests": 0, "chat_completions": 0, "models": 0, "failed_on_purpose": 0}
    app.state.fail_first_n = fail_first_n
    stats_lock = threading.Lock()

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Any) -> Any:
        with stats_lock:
            app.state.stats["requests"] += 1
        return await call_next(request)

    def error(status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": status}})

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        app.state.stats["models"] += 1
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "alignkit"}]}

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatRequest) -> Any:
        with stats_lock:
            app.state.stats["chat_completions"] += 1
            if app.state.stats["failed_on_purpose"] < app.state.fail_first_n:
                app.state.stats["failed_on_purpose"] += 1
                return error(500, "injected failure (fail_first_n)", "server_error")
        if body.model not in (None, model_name):
            return error(
                404, f"model {body.model!r} is not served here; this server serves {model_name!r}", "invalid_request_error"
            )
        if body.n != 1:
            return error(400, "only n=1 is supported", "invalid_request_error")
        try:
            prompt_ids = encode_prompt(tokenizer, [m.model_dump() for m in body.messages])
            top = (body.top_logprobs or 0) if body.logprobs else 0
            max_tokens = body.max_completion_tokens or body.max_tokens or 256
            ids, entries, finish = decoder.decode(prompt_ids, max_tokens, body.temperature, body.top_p, body.seed or 0, top)
        except ValueError as err:
            return error(400, str(err), "invalid_request_error")
        text = tokenizer.decode(ids, skip_special_tokens=True)
        stops = [body.stop] if isinstance(body.stop, str) else (body.stop or [])
        cut = min((text.find(s) for s in stops if s and s in text), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": {"content": entries} if body.logprobs else None,
                }
            ],
            "usage": {
                "prompt_tokens": len(prompt_ids),
                "completion_tokens": len(ids),
                "total_tokens": len(prompt_ids) + len(ids),
            },
        }

    return app


class BackgroundServer:
    """Run an app with uvicorn in a daemon thread (tests, notebooks); ``url`` ends in ``/v1``.

    Binding the socket ourselves means port 0 works and the real port is known before start.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.host, self.port = self.socket.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server on {self.host}:{self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _read_texts(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def serve(config: ServeConfig) -> None:
    """Load the model and serve it until interrupted."""
    texts = _read_texts(config.tiny_texts) if config.tiny_texts else ()
    model, tokenizer = load_model(
        config.model, allow_download=config.allow_download, dtype=config.dtype, tiny_texts=texts, seed=config.seed
    )
    app = make_app(model, tokenizer, config.model_name or config.model)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
