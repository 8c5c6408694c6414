"""``alignkit reward-server``: alignkit rewards behind OpenRLHF's remote reward-model protocol.

OpenRLHF (``--remote_rm_url http://HOST:PORT/get_reward``) POSTs ``{"query": [...], "prompts":
[...], "labels": [...]}`` — each query is a prompt followed by its response — and reads
``rewards`` (and ``scores``, ``extra_logs``) from the JSON answer
(:func:`alignkit.train.reward_adapters.openrlhf_rewards`). Any reward spec alignkit trains with
works: ``rm:PATH``, ``sandbox[:FOLDER]``, ``python:mod:fn`` or a weighted mix.

Requests are scored one at a time (a lock around the reward: a reward model is one set of weights
on one device); bodies over ``--max-request-bytes`` get 413 before they are read, and a malformed
request gets a 400 naming the problem, in the same error shape as ``alignkit serve``.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from alignkit.ai.config import RewardServerConfig
from alignkit.ai.serving.http import read_body
from alignkit.ai.serving.protocol import APIError
from alignkit.train.reward_adapters import openrlhf_rewards
from alignkit.train.rewards import CombinedReward, build_reward


def make_reward_app(reward: CombinedReward, max_request_bytes: int = 16 * 1024 * 1024) -> Any:
    app = FastAPI(title="alignkit reward server (OpenRLHF remote RM protocol)")
    lock = threading.Lock()
    app.state.stats = {"requests": 0, "scored": 0}

    @app.exception_handler(APIError)
    async def api_error(request: Request, err: APIError) -> JSONResponse:
        return JSONResponse(status_code=err.status, content=err.body())

    def score(payload: dict[str, Any]) -> dict[str, Any]:
        with lock:
            try:
                out = openrlhf_rewards(reward, payload)
            except ValueError as err:
                raise APIError(400, str(err)) from err
            app.state.stats["scored"] += len(out["rewards"])
            return out

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/get_reward")
    @app.post("/")
    async def get_reward(request: Request) -> Any:
        app.state.stats["requests"] += 1
        raw = await read_body(request, max_request_bytes)
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise APIError(400, f"the request body is not valid JSON: {err}", code="invalid_json") from err
        if not isinstance(payload, dict):
            raise APIError(400, "the request body must be a JSON object with 'query' (and 'prompts', 'labels')")
        return await run_in_threadpool(score, payload)

    return app


def reward_server(config: RewardServerConfig) -> None:
    """Load the reward and serve it until interrupted."""
    app = make_reward_app(build_reward(config.reward), config.max_request_bytes)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
