"""Continuous batching and cancellation: concurrent requests share decode steps; abandoned ones stop."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

QUESTIONS = [
    "What is the river of Varnholt?",
    "Who lives in Varnholt?",
    "How do I make a bomb?",
    "What colour is the sky?",
    "Tell me about the town of Elsa.",
    "Is the product safe?",
]


def wait_until(condition, seconds: float = 30.0) -> None:
    """Poll a condition (a deadline, not a timing assertion: it only bounds a hang)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_concurrent_requests_share_steps_and_answer_as_if_alone(sandbox, client):
    stats = sandbox.app.state.engine.stats
    ask = [[{"role": "user", "content": q}] for q in QUESTIONS]

    def one(messages):
        r = client.chat.completions.create(model="base", messages=messages, max_tokens=24, temperature=0, logprobs=True)
        return r.choices[0].message.content, [e.logprob for e in r.choices[0].logprobs.content]

    alone = [one(m) for m in ask]
    peak_before = stats.peak_batch
    stats.peak_batch = 0
    with ThreadPoolExecutor(len(ask)) as pool:
        together = list(pool.map(one, ask))
    assert stats.peak_batch > 1  # one decode loop served several requests in the same forward
    stats.peak_batch = max(stats.peak_batch, peak_before)
    for (text_a, lp_a), (text_b, lp_b) in zip(alone, together):
        # Greedy text is the same whatever a request shares the batch with (left padding is masked,
        # positions count real tokens); log-probs agree to float32 noise.
        assert text_a == text_b
        assert lp_b == pytest.approx(lp_a, abs=1e-4)


def test_seeded_sampling_ignores_batch_neighbours(noisy):
    c = openai.OpenAI(base_url=noisy.url, api_key="unused", max_retries=0)
    msgs = [{"role": "user", "content": "one two"}]

    def seeded(seed):
        return (
            c.chat.completions.create(model="tiny", messages=msgs, max_tokens=10, temperature=1.0, seed=seed)
            .choices[0]
            .message.content
        )

    alone = seeded(3)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(seeded, [3, 4, 3, 5]))
    assert results[0] == results[2] == alone


def test_disconnected_stream_stops_decoding(noisy):
    engine = noisy.app.state.engine
    cancelled = engine.stats.cancelled
    body = {"messages": [{"role": "user", "content": "one"}], "max_tokens": 900, "temperature": 1.0, "seed": 1, "stream": True}
    with httpx.stream("POST", f"{noisy.url}/chat/completions", json=body, timeout=30) as response:
        lines = response.iter_lines()
        got = [next(lines) for _ in range(4)]  # a few chunks, then hang up
    assert all(line.startswith("data: ") or not line for line in got)
    wait_until(lambda: engine.stats.cancelled > cancelled and engine.stats.running == 0)
    steps = engine.stats.steps
    time.sleep(0.3)
    assert engine.stats.steps == steps  # nothing decodes for a client that left


def test_disconnected_plain_request_stops_decoding(noisy):
    engine = noisy.app.state.engine
    cancelled = engine.stats.cancelled
    body = {"messages": [{"role": "user", "content": "two"}], "max_tokens": 900, "temperature": 1.0, "seed": 2, "n": 3}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{noisy.url}/chat/completions", json=body, timeout=0.5)
    wait_until(lambda: engine.stats.cancelled >= cancelled + 3 and engine.stats.running == 0)
    # A probe right after is served at once (no abandoned work ahead of it).
    c = openai.OpenAI(base_url=noisy.url, api_key="unused", max_retries=0)
    r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=3)
    assert r.usage.completion_tokens <= 3
