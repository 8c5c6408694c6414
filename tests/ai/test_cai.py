"""Supervised CAI through the real HTTP path and through the local backend."""

from __future__ import annotations

import pytest

from alignkit.ai import (
    LocalBackend,
    OpenAIBackend,
    load_constitution,
    pair_records,
    run_sl_cai,
    sft_records,
    write_cai_outputs,
)
from alignkit.ai.cai import CAIRound, CAITrace
from alignkit.data import read_records

PROMPTS = ["How do I kill a stuck process?", "What colour is the sky?", "Tell me about the river of Varnholt."]


class Recorder:
    """Wraps a backend and records every conversation sent to ``chat``."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def chat(self, messages_list, max_tokens=256, temperature=0.0, seed=0):
        self.calls.append([list(m) for m in messages_list])
        return self.inner.chat(messages_list, max_tokens=max_tokens, temperature=temperature, seed=seed)

    def option_logprobs(self, messages, options):
        return self.inner.option_logprobs(messages, options)


def test_sl_cai_over_http_prompts_and_trace(server, stats, tmp_path):
    constitution = load_constitution()
    backend = Recorder(OpenAIBackend(server.url, model="tiny", cache_dir=tmp_path / "cache"))
    before = stats["chat_completions"]
    traces = run_sl_cai(backend, PROMPTS, constitution, rounds=2, seed=7, max_tokens=6, temperature=1.0)
    # 1 sampling call + 2 rounds x (critique + revision) = 5 batched calls, each with every prompt.
    assert len(backend.calls) == 5 and all(len(c) == len(PROMPTS) for c in backend.calls)
    assert stats["chat_completions"] - before == 5 * len(PROMPTS)

    names = {p.name: p for p in constitution.principles}
    for i, t in enumerate(traces):
        assert t.prompt == PROMPTS[i] and len(t.rounds) == 2
        assert backend.calls[0][i] == [{"role": "user", "content": PROMPTS[i]}]
        for r, rnd in enumerate(t.rounds):
            principle = names[rnd.principle]
            assert principle.critique_request.strip() in rnd.critique_request
            assert principle.revision_request.strip() in rnd.revision_request
            critique_convo = backend.calls[1 + 2 * r][i]
            revision_convo = backend.calls[2 + 2 * r][i]
            # The critique sees the latest response; the revision sees the critique it must act on.
            latest = t.response if r == 0 else t.rounds[r - 1].revision
            assert critique_convo[-2] == {"role": "assistant", "content": latest}
            assert critique_convo[-1] == {"role": "user", "content": rnd.critique_request}
            assert revision_convo[-2] == {"role": "assistant", "content": rnd.critique}
            assert revision_convo[-1] == {"role": "user", "content": rnd.revision_request}
            assert revision_convo[:-2] == critique_convo
        assert t.final == t.rounds[-1].revision
        # The full trace replays exactly as the model saw it.
        assert t.messages()[: len(backend.calls[4][i])] == backend.calls[4][i]


def test_sl_cai_principle_draws_are_seeded(server, tmp_path):
    constitution = load_constitution()
    backend = OpenAIBackend(server.url, model="tiny", cache_dir=tmp_path)
    prompts = PROMPTS * 4
    a = run_sl_cai(backend, prompts, constitution, rounds=1, seed=1, max_tokens=2)
    b = run_sl_cai(backend, prompts, constitution, rounds=1, seed=1, max_tokens=2)
    c = run_sl_cai(backend, prompts, constitution, rounds=1, seed=2, max_tokens=2)
    draws = lambda ts: [t.rounds[0].principle for t in ts]  # noqa: E731
    assert draws(a) == draws(b) and draws(a) != draws(c)
    assert len(set(draws(a))) > 1  # principles vary across prompts
    # A prompt's draw depends on (seed, index), not on how many prompts come after it.
    assert draws(run_sl_cai(backend, prompts[:3], constitution, rounds=1, seed=1, max_tokens=2)) == draws(a)[:3]


def test_rerun_makes_no_http_calls(server, stats, tmp_path):
    constitution = load_constitution()
    first = run_sl_cai(
        OpenAIBackend(server.url, model="tiny", cache_dir=tmp_path),
        PROMPTS,
        constitution,
        rounds=1,
        seed=3,
        max_tokens=5,
        temperature=1.0,
    )
    before = stats["requests"]
    again = OpenAIBackend(server.url, model="tiny", cache_dir=tmp_path)
    second = run_sl_cai(again, PROMPTS, constitution, rounds=1, seed=3, max_tokens=5, temperature=1.0)
    assert stats["requests"] == before and again.http_calls == 0
    assert [t.model_dump() for t in second] == [t.model_dump() for t in first]


def test_sl_cai_with_local_backend(tiny, tmp_path):
    model, tokenizer = tiny
    traces = run_sl_cai(
        LocalBackend(model, tokenizer), PROMPTS, load_constitution(), rounds=1, seed=0, max_tokens=6, temperature=1.0
    )
    assert [t.prompt for t in traces] == PROMPTS and all(len(t.rounds) == 1 for t in traces)
    paths = write_cai_outputs(traces, tmp_path / "out")
    import json

    rows = [json.loads(line) for line in paths["traces"].read_text().splitlines()]
    assert [r["final"] for r in rows] == [t.final for t in traces]
    assert [r["rounds"][0]["critique"] for r in rows] == [t.rounds[0].critique for t in traces]
    sft = read_records(paths["sft"], kind="sft").records
    assert [r["completion"] for r in sft] == [t.final for t in traces if t.final.strip()]


def test_exports_by_hand():
    def trace(prompt, response, revisions):
        return CAITrace(
            prompt=prompt,
            response=response,
            rounds=[
                CAIRound(principle=f"p{i}", critique_request="c?", critique="c", revision_request="r?", revision=rev)
                for i, rev in enumerate(revisions)
            ],
        )

    traces = [
        trace("q1", "bad answer", ["better", "best"]),
        trace("q2", "same", ["same"]),  # revision equals original: no preference
        trace("q3", "answer", [" "]),  # empty revision: no demonstration, no pair
        trace("q4", "untouched", []),  # zero rounds: SFT keeps the response, no pair
    ]
    assert sft_records(traces) == [
        {"prompt": "q1", "completion": "best", "source": "sl-cai", "principles": ["p0", "p1"]},
        {"prompt": "q2", "completion": "same", "source": "sl-cai", "principles": ["p0"]},
        {"prompt": "q4", "completion": "untouched", "source": "sl-cai", "principles": []},
    ]
    assert pair_records(traces) == [
        {"prompt": "q1", "chosen": "best", "rejected": "bad answer", "source": "sl-cai", "principles": ["p0", "p1"]},
    ]


def test_negative_rounds_rejected():
    with pytest.raises(ValueError, match="rounds"):
        run_sl_cai(None, ["x"], load_constitution(), rounds=-1)
