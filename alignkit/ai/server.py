"""``alignkit serve``: any model alignkit loads, behind an OpenAI-compatible HTTP API.

Why our own server: it lets every tool that speaks the OpenAI protocol (our ``OpenAIBackend``, the
``openai`` client, evaluation harnesses) use a checkpoint fresh out of training, and it lets the
test suite drive the real HTTP path end to end on loopback with a tiny model. For a large model on
a GPU, vLLM is faster; this server is for models alignkit trains and for tests.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions`` with
``n``, ``stop``, ``seed``, ``logprobs``/``top_logprobs``, ``stream`` (server-sent events in
OpenAI's chunk format, ending ``data: [DONE]``; ``stream_options.include_usage`` adds the usage
chunk). All requests share one decode loop (continuous batching,
:mod:`alignkit.ai.serving.engine`); a request whose client disconnects stops decoding at the next
step. Protection: ``--api-key-env VAR`` (bearer token, compared in constant time), bodies over
``--max-request-bytes`` refused with 413 before they are read, ``max_tokens``, ``n`` and
``top_logprobs`` capped (:class:`alignkit.ai.config.ServeLimits`), a bounded wait queue (429).
Errors have OpenAI's shape (:mod:`alignkit.ai.serving.protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from alignkit.ai.config import ServeConfig, ServeLimits
from alignkit.ai.serving.engine import Engine, Job, QueueFull, SamplingParams
from alignkit.ai.serving.http import Guard, error_response, read_body
from alignkit.ai.serving.moderation import ServeGuard, Verdict, choice_text, refuse_choice, replay
from alignkit.ai.serving.protocol import APIError, ChatRequest, CompletionRequest, Response, parse, sse
from alignkit.data.chat import encode_prompt
from alignkit.models.loading import load_model
from alignkit.plugins import load_object

POLL_S = 0.1  # how often a waiting request checks that its client is still there


def make_app(
    model: torch.nn.Module,
    tokenizer: Any,
    model_name: str = "alignkit",
    fail_first_n: int = 0,
    *,
    limits: ServeLimits | None = None,
    api_key: str | None = None,
    request_log: Path | None = None,
    guard: ServeGuard | None = None,
) -> Any:
    """The FastAPI app. ``fail_first_n`` answers the first n chat requests with HTTP 500 (for
    testing clients' retries). ``app.state.stats`` counts requests received per endpoint,
    ``app.state.engine.stats`` what the decode loop did. ``request_log``: append one JSONL row per
    answered request, ``{"id", "time", "model", "request", "response"}`` with the OpenAI bodies
    (what ``alignkit monitor run --log`` reads). ``guard``: screen input and/or output, refusing or
    rewriting what it flags (:mod:`alignkit.ai.serving.moderation`; ``app.state.guard.stats``)."""
    limits = limits or ServeLimits()
    app = FastAPI(title="alignkit OpenAI-compatible server")
    engine = Engine(model, tokenizer, max_batch_size=limits.max_batch_size, max_queue=limits.max_queue)
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    app.state.engine = engine
    app.state.guard = guard
    app.state.stats = {"requests": 0, "chat_completions": 0, "completions": 0, "models": 0, "failed_on_purpose": 0}
    app.state.fail_first_n = fail_first_n
    stats_lock = threading.Lock()
    expected = f"Bearer {api_key}".encode() if api_key else None
    log_lock = threading.Lock()

    def log_request(payload: dict[str, Any], body: dict[str, Any]) -> None:
        if request_log is None:
            return
        row = {"id": body["id"], "time": time.time(), "model": model_name, "request": payload, "response": body}
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with log_lock, open(request_log, "a", encoding="utf-8") as f:
            f.write(line)

    def count(key: str) -> None:
        with stats_lock:
            app.state.stats[key] += 1

    app.add_middleware(Guard, expected=expected, on_request=lambda: count("requests"))

    @app.exception_handler(APIError)
    async def api_error(request: Request, err: APIError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        return error_response(APIError(err.status_code, f"{request.method} {request.url.path}: {err.detail}", kind))

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        count("models")
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "alignkit"}]}

    def check_common(body: Any, max_tokens: int, top: int, prompts: list[list[int]]) -> int:
        if body.model not in (None, model_name):
            raise APIError(
                404,
                f"model {body.model!r} is not served here; this server serves {model_name!r}",
                "not_found_error",
                "model",
                "model_not_found",
            )
        if body.n > limits.max_n:
            raise APIError(400, f"n is {body.n}; this server allows at most {limits.max_n}", param="n")
        if top > limits.max_top_logprobs:
            raise APIError(400, f"top_logprobs is {top}; at most {limits.max_top_logprobs}", param="top_logprobs")
        if max_tokens > limits.max_tokens_limit:
            raise APIError(400, f"max_tokens is {max_tokens}; at most {limits.max_tokens_limit}", param="max_tokens")
        longest = max(len(p) for p in prompts)
        if context is not None:
            if longest >= context:
                raise APIError(
                    400,
                    f"the prompt has {longest} tokens; the model's context is {context}",
                    param="messages",
                    code="context_length_exceeded",
                )
            max_tokens = min(max_tokens, context - longest)
        return max_tokens

    async def run(
        request: Request,
        job: Job,
        response: Response,
        stream: bool,
        include_usage: bool,
        payload: dict[str, Any],
        log: bool = True,
    ) -> Any:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def notify() -> None:
            loop.call_soon_threadsafe(event.set)

        job.notify = notify
        try:
            engine.submit(job)
        except QueueFull as err:
            raise APIError(429, str(err), "rate_limit_error", code="queue_full") from err

        def usage() -> dict[str, int]:
            completion = job.completion_tokens()
            return {
                "prompt_tokens": job.prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": job.prompt_tokens + completion,
            }

        async def wait() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), POLL_S)
            event.clear()

        if stream:

            async def events() -> AsyncIterator[bytes]:
                try:
                    while True:
                        finished = job.done
                        for delta in job.take():
                            response.add(delta)
                            for chunk in response.chunks(delta):
                                yield sse(chunk)
                        if finished:
                            break
                        await wait()
                    if job.error is not None:
                        yield sse(APIError(500, job.error, "server_error").body())
                    elif include_usage:
                        yield sse(response.usage_chunk(usage()))
                    yield sse("[DONE]")
                    if job.error is None:
                        log_request(payload, response.body(usage()))
                finally:
                    if not job.done:
                        job.cancel()  # the client went away mid-stream (or the server is stopping)

            return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

        try:
            while not job.done:
                await wait()
                for delta in job.take():
                    response.add(delta)
                if not job.done and await request.is_disconnected():
                    job.cancel()
                    return JSONResponse(status_code=499, content=APIError(499, "client disconnected").body())
        except asyncio.CancelledError:
            job.cancel()
            raise
        for delta in job.take():
            response.add(delta)
        if job.error is not None:
            raise APIError(500, job.error, "server_error")
        answer = response.body(usage())
        if log:
            log_request(payload, answer)
        return answer

    async def guarded(
        request: Request,
        job: Job,
        response: Response,
        stream: bool,
        include_usage: bool,
        payload: dict[str, Any],
        prompts: list[Any],
        flagged_in: list[Verdict | None],
        redo: Any = None,
    ) -> Any:
        """Decode, then screen every choice (``prompts[i]``: what choice i answers) before anything is sent.

        A choice whose prompt was flagged on input is refused; a flagged output is regenerated once by
        ``redo(indices, verdicts) -> {index: (text, completion_tokens)}`` (rewrite) or refused."""
        assert guard is not None
        answer = await run(request, job, response, False, False, payload, log=False)
        if isinstance(answer, JSONResponse):  # the client went away
            return answer
        choices = answer["choices"]
        kept = [True] * len(choices)
        todo = [i for i in range(len(choices)) if flagged_in[i] is None]
        verdicts: dict[int, Verdict] = {}
        if "output" in guard.on or redo is not None:
            found = await asyncio.to_thread(
                guard.screen_outputs, [prompts[i] for i in todo], [choice_text(choices[i]) for i in todo]
            )
            verdicts = {i: v for i, v in zip(todo, found) if v is not None}
        again = await redo(sorted(verdicts), [verdicts[i] for i in sorted(verdicts)]) if redo and verdicts else {}
        for i, choice in enumerate(choices):
            verdict = flagged_in[i] or verdicts.get(i)
            if verdict is None:
                continue
            kept[i] = False
            stage = "input" if flagged_in[i] is not None else "output"
            if i in again:
                text, tokens = again[i]
                guard.record(answer["id"], stage, "rewritten", verdict, prompts[i], choice_text(choice))
                if "message" in choice:
                    choice["message"]["content"] = text
                else:
                    choice["text"] = text
                choice["logprobs"] = None
                answer["usage"]["completion_tokens"] += tokens
                answer["usage"]["total_tokens"] += tokens
            else:
                guard.record(answer["id"], stage, "refused", verdict, prompts[i], choice_text(choice))
                refuse_choice(choice, guard.refusal)
        log_request(payload, answer)
        if stream:
            events = replay(response, answer, kept, include_usage)
            return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return answer

    def refused(kind: Any, n: int, payload: dict[str, Any], verdict: Verdict, prompt: Any, stream: bool, usage: bool) -> Any:
        """A chat request flagged on input, answered without decoding: every choice is the refusal."""
        assert guard is not None
        response = Response(kind, model_name, n, False)
        answer = response.body({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        guard.record(answer["id"], "input", "refused", verdict, prompt, None)
        for choice in answer["choices"]:
            refuse_choice(choice, guard.refusal)
        log_request(payload, answer)
        if stream:
            events = replay(response, answer, [False] * n, usage)
            return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return answer

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        body: ChatRequest = parse(ChatRequest, await read_body(request, limits.max_request_bytes))
        count("chat_completions")
        with stats_lock:
            if app.state.stats["failed_on_purpose"] < app.state.fail_first_n:
                app.state.stats["failed_on_purpose"] += 1
                raise APIError(500, "injected failure (fail_first_n)", "server_error")
        if body.top_logprobs and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs=true", param="top_logprobs")
        messages = [m.model_dump() for m in body.messages]
        try:
            prompt = encode_prompt(tokenizer, messages)
        except ValueError as err:
            raise APIError(400, str(err), param="messages") from err
        top = body.top_logprobs or 0
        wanted = body.max_completion_tokens or body.max_tokens or limits.default_max_tokens
        max_tokens = check_common(body, wanted, top, [prompt])
        payload = body.model_dump(exclude_none=True)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        flagged_in = (await asyncio.to_thread(guard.screen_inputs, [messages]))[0] if guard is not None else None
        if guard is not None and flagged_in is not None:
            if guard.action == "refuse":
                return refused("chat", body.n, payload, flagged_in, messages, body.stream, include_usage)
            prompt = encode_prompt(tokenizer, guard.instructed(messages, flagged_in))
            max_tokens = check_common(body, wanted, top, [prompt])
        params = SamplingParams(
            max_tokens,
            body.temperature,
            body.top_p,
            body.stops() + engine.stop_strings,
            top if body.logprobs else 0,
            body.logprobs,
        )
        job = Job([prompt], body.n, params, body.seed)
        response = Response("chat", model_name, len(job.choices), body.logprobs)
        if guard is None or ("output" not in guard.on and flagged_in is None):
            return await run(request, job, response, body.stream, include_usage, payload)
        if flagged_in is not None:  # answered under the safety instruction; the answer is screened below
            guard.record(response.id, "input", "rewritten", flagged_in, messages, None)

        async def redo(indices: list[int], verdicts: list[Verdict]) -> dict[int, tuple[str, int]]:
            """Rewrite: regenerate flagged choices once under the safety instruction; keep those that pass."""
            if guard is None or guard.action != "rewrite":
                return {}
            retry = encode_prompt(tokenizer, guard.instructed(messages, verdicts[0]))
            seed = None if body.seed is None else body.seed + 1
            again = Job([retry], len(indices), params, seed)
            answer = await run(request, again, Response("chat", model_name, len(indices), False), False, False, payload, False)
            if isinstance(answer, JSONResponse):
                return {}
            texts = [choice_text(c) for c in answer["choices"]]
            still = await asyncio.to_thread(guard.screen_outputs, [messages] * len(texts), texts)
            tokens = answer["usage"]["completion_tokens"] // max(len(texts), 1)
            return {i: (t, tokens) for i, t, v in zip(indices, texts, still) if v is None}

        n = len(job.choices)
        return await guarded(request, job, response, body.stream, include_usage, payload, [messages] * n, [None] * n, redo)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body: CompletionRequest = parse(CompletionRequest, await read_body(request, limits.max_request_bytes))
        count("completions")
        if body.echo:
            raise APIError(400, "echo is not supported", param="echo")
        if body.suffix:
            raise APIError(400, "suffix is not supported", param="suffix")
        if body.best_of not in (None, body.n):
            raise APIError(400, "best_of other than n is not supported", param="best_of")
        raw = body.prompt
        if isinstance(raw, str):
            items: list[Any] = [raw]
        elif raw and all(isinstance(x, int) for x in raw):
            items = [raw]
        else:
            items = list(raw)
        prompts: list[list[int]] = []
        vocab = len(tokenizer)
        for item in items:
            if isinstance(item, str):
                prompts.append(encode_prompt(tokenizer, item, "raw"))
            else:
                if not item or any(not 0 <= t < vocab for t in item):
                    raise APIError(400, f"token-id prompts must be non-empty with ids in [0, {vocab})", param="prompt")
                prompts.append(list(item))
        top = body.logprobs or 0
        max_tokens = check_common(body, body.max_tokens or limits.default_max_tokens, top, prompts)
        wants = body.logprobs is not None
        params = SamplingParams(max_tokens, body.temperature, body.top_p, body.stops() + engine.stop_strings, top, wants)
        job = Job(prompts, body.n, params, body.seed)
        response = Response("completion", model_name, len(job.choices), wants)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        payload = body.model_dump(exclude_none=True)
        if guard is None:
            return await run(request, job, response, body.stream, include_usage, payload)
        texts = [tokenizer.decode(p) for p in prompts]  # what the guard reads (token-id prompts too)
        flags = await asyncio.to_thread(guard.screen_inputs, texts)
        per_choice = len(job.choices) // len(prompts)  # choice index = prompt * n + choice
        shown = [texts[i // per_choice] for i in range(len(job.choices))]
        flagged = [flags[i // per_choice] for i in range(len(job.choices))]
        if "output" not in guard.on and not any(flagged):
            return await run(request, job, response, body.stream, include_usage, payload)
        return await guarded(request, job, response, body.stream, include_usage, payload, shown, flagged)

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
        engine = getattr(getattr(self.app, "state", None), "engine", None)
        if engine is not None:
            engine.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _read_texts(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def api_key_from_env(variable: str | None) -> str | None:
    """The key named by ``--api-key-env``; a named but unset or empty variable is an error, never "no auth"."""
    if variable is None:
        return None
    key = os.environ.get(variable, "")
    if not key.strip():
        raise ValueError(f"--api-key-env {variable}: the environment variable is not set or empty")
    return key.strip()


def serve_guard(config: ServeConfig) -> ServeGuard | None:
    """The ``--guard`` of ``config`` (a guard folder or ``judge:MODEL``, built by :mod:`alignkit.safety`), or None."""
    if config.guard is None:
        return None
    source = load_object("alignkit.safety.config:GuardSource", what="guard source")
    build = load_object("alignkit.safety.moderate:build_guard", what="guard")
    guard = build(
        source(
            guard=config.guard,
            backend_url=config.guard_backend_url,
            policy=config.guard_policy,
            threshold=config.guard_threshold,
        ),
        cache_dir=Path(".alignkit_cache"),
    )
    on = frozenset(part.strip() for part in config.guard_on.split(",") if part.strip())
    return ServeGuard(guard, on=on, action=config.guard_action, refusal=config.guard_refusal, log_path=config.guard_log)


def serve(config: ServeConfig) -> None:
    """Load the model and serve it until interrupted."""
    api_key = api_key_from_env(config.api_key_env)
    texts = _read_texts(config.tiny_texts) if config.tiny_texts else ()
    model, tokenizer = load_model(
        config.model, allow_download=config.allow_download, dtype=config.dtype, tiny_texts=texts, seed=config.seed
    )
    limits = ServeLimits.model_validate(config.model_dump(include=set(ServeLimits.model_fields)))
    app = make_app(
        model,
        tokenizer,
        config.model_name or config.model,
        limits=limits,
        api_key=api_key,
        request_log=config.log_requests,
        guard=serve_guard(config),
    )
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
