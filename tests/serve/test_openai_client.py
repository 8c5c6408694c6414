"""``alignkit serve`` through the official ``openai`` client: streaming, n, completions, stops, seeds."""

from __future__ import annotations

import openai
import pytest

ASK = [{"role": "user", "content": "What is the river of Varnholt?"}]


def joined(stream):
    """Content per choice index, finish reasons, usage and the number of content chunks of a chat stream."""
    texts, finish, usage, chunks = {}, {}, None, 0
    for chunk in stream:
        if not chunk.choices:
            usage = chunk.usage
            continue
        for c in chunk.choices:
            if c.delta.content:
                chunks += 1
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    return texts, finish, usage, chunks


def test_streamed_chat_joins_to_the_non_streamed_text_at_t0(client):
    plain = client.chat.completions.create(model="base", messages=ASK, max_tokens=40, temperature=0)
    stream = client.chat.completions.create(
        model="base", messages=ASK, max_tokens=40, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    texts, finish, usage, chunks = joined(stream)
    text = plain.choices[0].message.content
    assert len(text) > 10 and chunks > 3  # real text, delivered in pieces
    assert texts == {0: text}
    assert finish == {0: plain.choices[0].finish_reason}
    assert usage.completion_tokens == plain.usage.completion_tokens and usage.prompt_tokens == plain.usage.prompt_tokens


def test_n2_gives_two_choices_and_counts_both(client):
    r = client.chat.completions.create(model="base", messages=ASK, max_tokens=30, temperature=1.0, n=2, seed=11, logprobs=True)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].message.content != r.choices[1].message.content  # each choice has its own RNG stream
    assert r.usage.completion_tokens == sum(len(c.logprobs.content) for c in r.choices)
    again = client.chat.completions.create(model="base", messages=ASK, max_tokens=30, temperature=1.0, n=2, seed=11)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]
    # Streamed with n=2: chunks of both choices interleave, and each joins to its own text.
    texts, _, _, _ = joined(
        client.chat.completions.create(model="base", messages=ASK, max_tokens=30, temperature=1.0, n=2, seed=11, stream=True)
    )
    assert texts == {0: r.choices[0].message.content, 1: r.choices[1].message.content}


def test_completions_endpoint_prompts_times_n_and_logprobs(client):
    prompts = ["<|user|>\nWho lives in Varnholt?<|end|>\n<|assistant|>\n", "The river of"]
    r = client.completions.create(model="base", prompt=prompts, max_tokens=12, n=2, temperature=0, logprobs=3)
    assert r.object == "text_completion" and [c.index for c in r.choices] == [0, 1, 2, 3]
    # index = prompt * n + choice (OpenAI's order); greedy, so both choices of a prompt agree.
    assert r.choices[0].text == r.choices[1].text and r.choices[2].text == r.choices[3].text
    assert r.choices[0].text != r.choices[2].text
    total = 0
    for c in r.choices:
        lp = c.logprobs
        assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
        total += len(lp.tokens)
        assert all(len(alternatives) == 3 for alternatives in lp.top_logprobs)
        assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
        # Greedy: each chosen token is the most likely listed one.
        assert all(t == pytest.approx(max(alt.values())) for t, alt in zip(lp.token_logprobs, lp.top_logprobs))
    assert r.usage.completion_tokens == total
    one = client.completions.create(model="base", prompt=prompts[1], max_tokens=12, temperature=0)
    assert one.choices[0].text == r.choices[2].text
    pieces = client.completions.create(model="base", prompt=prompts[1], max_tokens=12, temperature=0, stream=True)
    assert "".join(chunk.choices[0].text for chunk in pieces) == one.choices[0].text


def test_stop_sequence_trims_text_logprobs_and_usage_alike(client):
    full = client.chat.completions.create(model="base", messages=ASK, max_tokens=40, temperature=0, logprobs=True)
    text = full.choices[0].message.content
    words = text.split(" ")
    assert len(words) > 3, text
    stop = " " + words[2]  # a word in the middle of the greedy answer
    cut = text.index(stop)
    r = client.chat.completions.create(
        model="base", messages=ASK, max_tokens=40, temperature=0, logprobs=True, stop=[stop, "zzz"]
    )
    assert r.choices[0].message.content == text[:cut]
    assert r.choices[0].finish_reason == "stop"
    kept = r.choices[0].logprobs.content
    assert r.usage.completion_tokens == len(kept) < full.usage.completion_tokens
    # The kept tokens are the first ones of the unstopped answer: exactly those that wrote text before the stop.
    assert [(e.token, e.logprob) for e in kept] == [(e.token, e.logprob) for e in full.choices[0].logprobs.content[: len(kept)]]
    written = "".join(e.token for e in kept)
    assert written.startswith(text[:cut]) and len("".join(e.token for e in kept[:-1])) < cut
    streamed, finish, usage, _ = joined(
        client.chat.completions.create(
            model="base",
            messages=ASK,
            max_tokens=40,
            temperature=0,
            stop=stop,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert streamed == {0: text[:cut]} and finish == {0: "stop"} and usage.completion_tokens == len(kept)


def test_unseeded_requests_differ_and_seeded_ones_repeat(noisy):
    c = openai.OpenAI(base_url=noisy.url, api_key="unused", max_retries=0)
    msgs = [{"role": "user", "content": "one two three"}]
    unseeded = {
        c.chat.completions.create(model="tiny", messages=msgs, max_tokens=12).choices[0].message.content for _ in range(3)
    }
    assert len(unseeded) == 3
    seeded = {
        c.chat.completions.create(model="tiny", messages=msgs, max_tokens=12, seed=7).choices[0].message.content for _ in range(3)
    }
    assert len(seeded) == 1


def test_request_log_rows_for_monitoring(sandbox_model, tmp_path):
    """``--log-requests``: one JSONL row per answered request, streamed ones included (the shape ``alignkit monitor`` reads)."""
    import json

    from alignkit.ai.server import BackgroundServer, make_app

    model, tokenizer = sandbox_model
    log = tmp_path / "requests.jsonl"
    with BackgroundServer(make_app(model, tokenizer, "base", request_log=log)) as srv:
        c = openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0)
        plain = c.chat.completions.create(model="base", messages=ASK, max_tokens=8, temperature=0)
        streamed = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in c.chat.completions.create(model="base", messages=ASK, max_tokens=8, temperature=0, stream=True)
        )
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="base", messages=ASK, n=100)  # refused: not logged
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["id"] == plain.id and rows[0]["model"] == "base"
    assert [r["request"]["messages"] for r in rows] == [ASK, ASK] and rows[1]["request"]["stream"] is True
    assert [r["response"]["choices"][0]["message"]["content"] for r in rows] == [plain.choices[0].message.content, streamed]
