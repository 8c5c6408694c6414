"""Any OpenAI-compatible chat endpoint (vLLM, TGI, ``alignkit serve``, hosted APIs) as a backend.

Requests go through the official ``openai`` client with its own retries switched off: we retry
5xx answers, rate limits, timeouts and connection errors ourselves with exponential backoff, so
the policy is visible and testable. Requests of a batch run on a small thread pool (endpoints
batch concurrent requests server-side; vLLM's continuous batching relies on it). Every answer is
cached on disk by a hash of the request, so a rerun makes no HTTP calls at all.

Option log-probs come from a one-token completion with ``logprobs=True, top_logprobs=k``: an
option's log-prob is the log-sum-exp over the listed first tokens whose stripped text equals the
option (``"A"`` and ``" A"`` both mean A). An option missing from the top ``k`` gets the smallest
listed log-prob, an upper bound on its true value; raise ``top_logprobs`` when that matters.
So options must be single tokens for the endpoint's tokenizer (letters and digits are).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
from tqdm.auto import tqdm

from alignkit.ai.backend import Message
from alignkit.ai.cache import RequestCache, request_key

log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """The endpoint kept failing (or refused the request); says which request and why."""


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


class OpenAIBackend:
    """Chat and option log-probs from an OpenAI-compatible HTTP endpoint.

    ``api_key`` may be any string for servers that ignore it (vLLM without ``--api-key``,
    ``alignkit serve``). ``cache_dir=None`` disables the cache. ``backoff`` is the first retry
    delay in seconds; it doubles each retry (with up to 25% jitter from a seeded RNG).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str = "EMPTY",
        model: str = "default",
        timeout: float = 60.0,
        max_retries: int = 4,
        concurrency: int = 8,
        cache_dir: str | Path | None = None,
        top_logprobs: int = 20,
        backoff: float = 1.0,
        progress: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)
        self.base_url, self.model = base_url, model
        self.max_retries, self.concurrency = max_retries, max(1, concurrency)
        self.cache = RequestCache(cache_dir) if cache_dir is not None else None
        self.top_logprobs, self.backoff, self.progress = top_logprobs, backoff, progress
        self._sleep = sleep
        self.http_calls = 0  # requests actually sent (retries included); cache hits are not counted
        self.options_missing = 0  # option log-prob answers where some option was not in the top-k
        self._count_lock = threading.Lock()

    # -- transport -------------------------------------------------------------------------------
    def _retryable(self, err: Exception) -> bool:
        if isinstance(err, (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError)):
            return True
        return isinstance(err, openai.APIStatusError) and err.status_code >= 500

    def _send(self, request: dict[str, Any]) -> dict[str, Any]:
        rng = random.Random(request_key(request))  # jitter, reproducible per request
        for attempt in range(self.max_retries + 1):
            with self._count_lock:
                self.http_calls += 1
            try:
                return self.client.chat.completions.create(**request).model_dump()
            except Exception as err:  # noqa: BLE001 - classified just below
                if not self._retryable(err):
                    raise BackendError(f"{self.base_url}: request refused: {err}") from err
                if attempt == self.max_retries:
                    raise BackendError(f"{self.base_url}: still failing after {attempt + 1} attempts: {err}") from err
                delay = self.backoff * 2**attempt * (1 + 0.25 * rng.random())
                log.warning(
                    "%s: %s; retry %d/%d in %.2fs", self.base_url, type(err).__name__, attempt + 1, self.max_retries, delay
                )
                self._sleep(delay)
        raise AssertionError("unreachable")

    def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """One chat-completion request (``model`` is filled in), answered from the cache if possible."""
        request = {"model": self.model, **request}
        if self.cache is not None:
            cached = self.cache.get(request)
            if cached is not None:
                return cached
        response = self._send(request)
        if self.cache is not None:
            self.cache.put(request, response)
        return response

    def complete_many(self, requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.concurrency == 1 or len(requests) <= 1:
            return [self.complete(r) for r in tqdm(requests, disable=not self.progress, desc="requests")]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(tqdm(pool.map(self.complete, requests), total=len(requests), disable=not self.progress, desc="requests"))

    # -- ChatBackend ------------------------------------------------------------------------------
    def chat(
        self, messages_list: Sequence[list[Message]], max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> list[str]:
        requests = [
            {
                "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
                "max_tokens": max_tokens,
                "temperature": temperature,
                "seed": seed,
                "n": 1,
            }
            for messages in messages_list
        ]
        return [r["choices"][0]["message"]["content"] or "" for r in self.complete_many(requests)]

    def option_logprobs(self, messages: list[Message], options: Sequence[str]) -> list[float]:
        return self.option_logprobs_many([messages], options)[0]

    def option_logprobs_many(self, messages_list: Sequence[list[Message]], options: Sequence[str]) -> list[list[float]]:
        """``option_logprobs`` for many prompts at once, sent concurrently."""
        requests = [
            {
                "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
                "max_tokens": 1,
                "temperature": 0.0,
                "seed": 0,
                "n": 1,
                "logprobs": True,
                "top_logprobs": self.top_logprobs,
            }
            for messages in messages_list
        ]
        responses = self.complete_many(requests)
        missing = sum(1 for r in responses if not _options_listed(r, options))
        if missing:
            self.options_missing += missing
            log.warning(
                "%d of %d answers listed not all of %s among their top %d first tokens; the missing "
                "options got an upper-bound log-prob (raise top_logprobs, or check the prompt makes the "
                "model answer with one of them)",
                missing,
                len(responses),
                list(options),
                self.top_logprobs,
            )
        return [option_logprobs_from_response(r, options) for r in responses]


def _options_listed(response: dict[str, Any], options: Sequence[str]) -> bool:
    try:
        listed = {t["token"].strip() for t in response["choices"][0]["logprobs"]["content"][0]["top_logprobs"]}
    except (KeyError, IndexError, TypeError):
        return False
    return all(o.strip() in listed for o in options)


def option_logprobs_from_response(response: dict[str, Any], options: Sequence[str]) -> list[float]:
    """Read the options' log-probs from the first token's ``top_logprobs`` of a chat completion."""
    try:
        top = response["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError) as err:
        raise BackendError(
            "the endpoint returned no top_logprobs for the first token (does it support "
            "logprobs=True, top_logprobs=k on chat completions?)"
        ) from err
    if not top:
        raise BackendError("the endpoint returned an empty top_logprobs list")
    floor = min(t["logprob"] for t in top)
    result = []
    for option in options:
        matches = [t["logprob"] for t in top if t["token"].strip() == option.strip()]
        result.append(_logsumexp(matches) if matches else floor)
    return result
