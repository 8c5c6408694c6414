"""``alignkit serve --guard``: flagged input/output refused (finish_reason content_filter) or rewritten, and logged.

Driven through the official ``openai`` client on 127.0.0.1 with the shipped sandbox base model and
in-process guards whose decisions are known, so every assertion is about what the hook does.
"""

from __future__ import annotations

import json

import openai
import pytest
from typer.testing import CliRunner

from alignkit.ai.config import ServeConfig
from alignkit.ai.server import BackgroundServer, make_app, serve_guard
from alignkit.ai.serving.moderation import REFUSAL, ServeGuard
from alignkit.cli import app as cli
from alignkit.models.loading import load_model
from alignkit.safety.guard import GuardScore, JudgeGuard
from alignkit.sandbox.config import SHIPPED_BASE_MODEL

ASK = [{"role": "user", "content": "What is the river of Varnholt?"}]
BOMB = [{"role": "user", "content": "How do I build a bomb?"}]


class WordGuard:
    """Flags input mentioning 'bomb'; flags the first ``flag_outputs`` outputs it sees (-1: every output)."""

    def __init__(self, flag_outputs: int = 0) -> None:
        self.flag_outputs, self.outputs_seen, self.inputs = flag_outputs, 0, []

    def score(self, prompts, responses=None):
        if responses is None:
            self.inputs += list(prompts)
            return [
                GuardScore(1.0, flagged_categories=["S9"], flagged=True) if "bomb" in str(p) else GuardScore(0.0) for p in prompts
            ]
        out = []
        for _ in responses:
            self.outputs_seen += 1
            flag = self.flag_outputs < 0 or self.outputs_seen <= self.flag_outputs
            out.append(GuardScore(0.9, flagged_categories=["S1"], flagged=True) if flag else GuardScore(0.1))
        return out


@pytest.fixture(scope="module")
def model():
    return load_model(str(SHIPPED_BASE_MODEL))


def serving(model, guard):
    return BackgroundServer(make_app(*model, "base", guard=guard))


def client(srv):
    return openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0)


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_flagged_input_is_refused_before_decoding_and_logged(model, tmp_path):
    log = tmp_path / "guard.jsonl"
    guard = ServeGuard(WordGuard(), log_path=log)
    with serving(model, guard) as srv:
        c = client(srv)
        r = c.chat.completions.create(model="base", messages=BOMB, max_tokens=20, n=2)
        assert [ch.message.content for ch in r.choices] == [REFUSAL, REFUSAL]
        assert {ch.finish_reason for ch in r.choices} == {"content_filter"} and r.usage.completion_tokens == 0
        stream = c.chat.completions.create(model="base", messages=BOMB, max_tokens=20, stream=True)
        chunks = list(stream)
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == REFUSAL
        assert chunks[-1].choices[0].finish_reason == "content_filter"
        clean = c.chat.completions.create(model="base", messages=ASK, max_tokens=20, temperature=0)
        assert clean.choices[0].finish_reason != "content_filter" and clean.choices[0].message.content != REFUSAL
        assert srv.app.state.engine.stats.prefills == 1  # only the clean request was decoded
    logged = rows(log)
    assert [(r["stage"], r["action"], r["categories"]) for r in logged] == [("input", "refused", ["S9"])] * 2
    assert logged[0]["id"] == r.id and logged[0]["prompt"] == BOMB
    assert guard.stats == {"input_flagged": 2, "output_flagged": 0, "rewritten": 0}


def test_flagged_output_is_refused_per_choice_and_clean_text_is_unchanged(model, tmp_path):
    with serving(model, None) as plain:
        expected = client(plain).chat.completions.create(model="base", messages=ASK, max_tokens=20, temperature=0)
    passing = ServeGuard(WordGuard(), on=frozenset({"output"}))
    with serving(model, passing) as srv:
        same = client(srv).chat.completions.create(model="base", messages=ASK, max_tokens=20, temperature=0)
        assert same.choices[0].message.content == expected.choices[0].message.content
        assert same.choices[0].finish_reason == expected.choices[0].finish_reason
    once = ServeGuard(WordGuard(flag_outputs=1), on=frozenset({"output"}), log_path=tmp_path / "g.jsonl")
    with serving(model, once) as srv:
        c = client(srv)
        r = c.chat.completions.create(model="base", messages=ASK, max_tokens=20, temperature=0, n=2)
        assert r.choices[0].message.content == REFUSAL and r.choices[0].finish_reason == "content_filter"
        assert r.choices[1].message.content == expected.choices[0].message.content  # greedy: both choices agree
        # Streamed: the answer is buffered and screened, then sent as chunks.
        stream = c.chat.completions.create(
            model="base", messages=ASK, max_tokens=20, temperature=0, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == expected.choices[0].message.content and chunks[-1].usage.completion_tokens > 0
        # The legacy completions endpoint is screened too.
        once.guard.flag_outputs = once.guard.outputs_seen + 1
        done = c.completions.create(model="base", prompt="The river of", max_tokens=8, temperature=0)
        assert done.choices[0].text == REFUSAL and done.choices[0].finish_reason == "content_filter"
    assert [(r["stage"], r["action"]) for r in rows(tmp_path / "g.jsonl")] == [("output", "refused")] * 2


def test_rewrite_regenerates_a_flagged_answer_once_and_answers_flagged_input_under_an_instruction(model, tmp_path):
    guard = ServeGuard(WordGuard(flag_outputs=1), action="rewrite", log_path=tmp_path / "g.jsonl")
    with serving(model, guard) as srv:
        c = client(srv)
        r = c.chat.completions.create(model="base", messages=ASK, max_tokens=20, temperature=0)
        assert r.choices[0].finish_reason != "content_filter" and r.choices[0].message.content != REFUSAL
        assert guard.stats["rewritten"] == 1 and guard.guard.outputs_seen == 2  # the regeneration was screened
        plain = c.chat.completions.create(model="base", messages=BOMB, max_tokens=20, temperature=0)
        # The flagged request was answered, with the safety instruction as a system message in front.
        assert plain.choices[0].finish_reason != "content_filter"
        with serving(model, None) as unguarded:
            raw = client(unguarded).chat.completions.create(model="base", messages=BOMB, max_tokens=20, temperature=0)
        assert plain.usage.prompt_tokens > raw.usage.prompt_tokens
    always = ServeGuard(WordGuard(flag_outputs=-1), action="rewrite", on=frozenset({"output"}))
    with serving(model, always) as srv:
        r = client(srv).chat.completions.create(model="base", messages=ASK, max_tokens=20, temperature=0)
        assert r.choices[0].message.content == REFUSAL and r.choices[0].finish_reason == "content_filter"
    logged = [(r["stage"], r["action"]) for r in rows(tmp_path / "g.jsonl")]
    assert logged == [("output", "rewritten"), ("input", "rewritten")]


def test_serve_guard_from_the_config_and_the_cli_flags(model):
    assert serve_guard(ServeConfig()) is None
    built = serve_guard(ServeConfig(guard=f"judge:{SHIPPED_BASE_MODEL}", guard_on="output", guard_action="rewrite"))
    assert isinstance(built.guard, JudgeGuard) and built.on == {"output"} and built.action == "rewrite"
    # A real guard end to end: the judge guard at threshold 0 flags everything, so the input is refused.
    strict = serve_guard(ServeConfig(guard=f"judge:{SHIPPED_BASE_MODEL}", guard_on="input", guard_threshold=0.0))
    with BackgroundServer(make_app(*model, "base", guard=strict)) as srv:
        r = client(srv).chat.completions.create(model="base", messages=ASK, max_tokens=8)
        assert r.choices[0].finish_reason == "content_filter" and strict.stats["input_flagged"] == 1
    with pytest.raises(ValueError, match="input"):
        ServeConfig(guard_on="inputs")
    with pytest.raises(ValueError, match="guard_on"):
        ServeGuard(WordGuard(), on=frozenset())
    help_text = CliRunner().invoke(cli, ["serve", "--help"], terminal_width=200).output
    assert all(flag in help_text for flag in ("--guard ", "--guard-on", "--guard-action", "--guard-log"))
