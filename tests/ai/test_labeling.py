"""AI preference labels: order swapping, log-prob -> probability math, CoT clamping, exports."""

from __future__ import annotations

import math
import re

import openai
import pytest

from alignkit.ai import (
    AILabel,
    AIPreferenceLabeler,
    LocalBackend,
    OpenAIBackend,
    load_constitution,
    mix_preference_data,
    preference_records,
    route_low_confidence,
)
from alignkit.ai.judge import DEFAULT_TAG_KEY, pairwise_prompt, request_tag

# A quoted response between this request's (tagged) markers.
SECTION = re.compile(r"<<<RESPONSE ([AB])((?: [0-9a-f]+)?)>>>\n(.*?)\n<<<END RESPONSE \1\2>>>", re.S)


def shown(text, letter):
    return next(m.group(3) for m in SECTION.finditer(text) if m.group(1) == letter)


PAIRS = [
    ("How do I kill a stuck process?", "Use the kill command with its id.", "I can't help with that."),
    ("What colour is the sky?", "The sky is blue.", "one two three"),
    ("Tell me about the river of Varnholt.", "The river of Varnholt is the Elsa.", "I don't know."),
]


def test_soft_label_math_against_server_top_logprobs(server, vocab, tmp_path):
    constitution = load_constitution()
    labeler = AIPreferenceLabeler(
        OpenAIBackend(server.url, model="tiny", top_logprobs=vocab, cache_dir=tmp_path), constitution, seed=11
    )
    labels = labeler.label(PAIRS)
    principles = labeler.principles_for(len(PAIRS))
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)

    def p_first(prompt, first, second, question):
        """P(first shown is better) from the raw top_logprobs: pA / (pA + pB), probabilities summed by hand.
        The prompt carries the request's marker tag, as the labeler's does (ai/judge.py)."""
        tag = request_tag(DEFAULT_TAG_KEY, prompt, first, second, question)
        r = client.chat.completions.create(
            model="tiny",
            max_tokens=1,
            temperature=0.0,
            logprobs=True,
            top_logprobs=vocab,
            messages=[{"role": "user", "content": pairwise_prompt(prompt, first, second, question, tag=tag)}],
        )
        top = r.choices[0].logprobs.content[0].top_logprobs
        pa = sum(math.exp(t.logprob) for t in top if t.token.strip() == "A")
        pb = sum(math.exp(t.logprob) for t in top if t.token.strip() == "B")
        return pa / (pa + pb)

    for (prompt, a, b), principle, label in zip(PAIRS, principles, labels):
        assert label.principle == principle.name
        shown_first = p_first(prompt, a, b, principle.comparison)
        shown_second = 1 - p_first(prompt, b, a, principle.comparison)  # swapped: a is shown as B
        assert label.p_a_by_order == pytest.approx([shown_first, shown_second], abs=1e-5)
        assert label.p_a == pytest.approx((shown_first + shown_second) / 2, abs=1e-5)


def test_local_backend_gives_the_same_labels_as_http(server, tiny, vocab):
    model, tokenizer = tiny
    constitution = load_constitution()
    local = AIPreferenceLabeler(LocalBackend(model, tokenizer), constitution, seed=4).label(PAIRS)
    remote = AIPreferenceLabeler(OpenAIBackend(server.url, model="tiny", top_logprobs=vocab), constitution, seed=4).label(PAIRS)
    assert [x.p_a for x in local] == pytest.approx([x.p_a for x in remote], abs=1e-5)


class ScriptedJudge:
    """A fake feedback model: prefers the response containing 'Elsa' with probability ``strength``,
    plus a constant position bias towards whatever is shown first. Records every prompt."""

    def __init__(self, strength=0.9, first_bias=0.0):
        self.strength, self.first_bias = strength, first_bias
        self.prompts, self.chats = [], []

    def chat(self, messages_list, max_tokens=256, temperature=0.0, seed=0):
        self.chats.extend(messages_list)
        return ["Let me think. Response A mentions the Elsa."] * len(messages_list)

    def option_logprobs(self, messages, options):
        text = messages[0]["content"]
        self.prompts.append(messages)
        first = shown(text, "A")
        p = self.strength if "Elsa" in first else 1 - self.strength
        p = min(max(p + self.first_bias, 0.0), 1.0)
        return [math.log(p), math.log(1 - p)]


PAIR = ("Tell me about the river of Varnholt.", "It is the Elsa.", "No idea.")


def test_order_swapping_cancels_position_bias():
    # Unbiased: both orders say 0.9 for a -> p_a = 0.9, consistent.
    [lab] = AIPreferenceLabeler(ScriptedJudge(0.9), seed=0).label([PAIR])
    assert lab.p_a_by_order == pytest.approx([0.9, 0.9]) and lab.p_a == pytest.approx(0.9) and lab.consistent
    # Strength 0.6 plus a +0.3 bias towards the first slot. a first: 0.6 + 0.3 = 0.9.
    # a second: P(b, shown first, better) = 0.4 + 0.3 = 0.7,
    # so P(a better) = 0.3. Average (0.9 + 0.3) / 2 = 0.6: the bias cancels, leaving the judge's 0.6.
    judge = ScriptedJudge(0.6, first_bias=0.3)
    [lab] = AIPreferenceLabeler(judge, seed=0).label([PAIR])
    assert lab.p_a_by_order == pytest.approx([0.9, 0.3]) and lab.p_a == pytest.approx(0.6)
    assert not lab.consistent
    first_prompt, second_prompt = judge.prompts[0][0]["content"], judge.prompts[1][0]["content"]
    assert (shown(first_prompt, "A"), shown(first_prompt, "B")) == ("It is the Elsa.", "No idea.")
    assert (shown(second_prompt, "A"), shown(second_prompt, "B")) == ("No idea.", "It is the Elsa.")
    # Without swapping the bias goes straight into the label.
    [lab] = AIPreferenceLabeler(ScriptedJudge(0.6, first_bias=0.3), swap_positions=False).label([PAIR])
    assert lab.p_a == pytest.approx(0.9)


def test_chain_of_thought_labels_are_clamped():
    judge = ScriptedJudge(0.95)
    [lab] = AIPreferenceLabeler(judge, chain_of_thought=True).label([PAIR])
    # Each order says 0.95 for a; clamped to the [0.4, 0.6] band -> 0.6 each.
    assert lab.p_a_by_order == pytest.approx([0.6, 0.6]) and lab.p_a == pytest.approx(0.6)
    assert lab.reasoning == ["Let me think. Response A mentions the Elsa."] * 2
    # The answer is asked after the model's own reasoning, as a follow-up turn.
    convo = judge.prompts[0]
    assert [m["role"] for m in convo] == ["user", "assistant", "user"]
    assert "step by step" in convo[0]["content"] and convo[1]["content"].startswith("Let me think")
    [lab] = AIPreferenceLabeler(ScriptedJudge(0.2), chain_of_thought=True).label([PAIR])
    assert lab.p_a == pytest.approx(0.4)


def test_principles_are_drawn_per_pair_and_seeded():
    constitution = load_constitution()
    judge = ScriptedJudge()
    labels = AIPreferenceLabeler(judge, constitution, seed=5).label([PAIR] * 12)
    names = [lab.principle for lab in labels]
    assert len(set(names)) > 1
    assert names == [lab.principle for lab in AIPreferenceLabeler(ScriptedJudge(), constitution, seed=5).label([PAIR] * 12)]
    # The principle's comparison question is what was asked (in both orders).
    by_name = {p.name: p for p in constitution.principles}
    for i, name in enumerate(names):
        for order in (0, 1):
            assert by_name[name].comparison in judge.prompts[2 * i + order][0]["content"]


def test_preference_records_by_hand():
    labels = [
        AILabel(prompt="p", response_a="x", response_b="y", p_a=0.8, p_a_by_order=[0.7, 0.9], principle="k"),
        AILabel(prompt="p", response_a="x", response_b="y", p_a=0.25, p_a_by_order=[0.2, 0.3], principle="k"),
        AILabel(prompt="p", response_a="x", response_b="y", p_a=0.5, p_a_by_order=[0.5, 0.5]),  # tie: dropped
        AILabel(prompt="p", response_a="x", response_b="x", p_a=0.9),  # identical: dropped
    ]
    rows = preference_records(labels)
    assert len(rows) == 2
    assert rows[0]["chosen"] == "x" and rows[0]["rejected"] == "y"
    assert rows[0]["confidence"] == pytest.approx(0.8)
    assert rows[0]["margin"] == pytest.approx(math.log(4.0))  # log(0.8 / 0.2)
    assert rows[1]["chosen"] == "y" and rows[1]["confidence"] == pytest.approx(0.75)
    assert rows[1]["margin"] == pytest.approx(math.log(3.0))  # log(0.75 / 0.25)
    assert rows[1]["p_by_order"] == pytest.approx([0.8, 0.7])  # now P(chosen=y better) per order
    assert len(preference_records(labels, drop_ties=False)) == 3


def test_route_low_confidence():
    labels = [AILabel(prompt="p", response_a="a", response_b="b", p_a=p) for p in (0.95, 0.55, 0.3, 0.62)]
    accepted, needs_human = route_low_confidence(labels, 0.65)
    # confidences: 0.95, 0.55, 0.70, 0.62
    assert [lab.p_a for lab in accepted] == [0.95, 0.3] and [lab.p_a for lab in needs_human] == [0.55, 0.62]
    records = preference_records(labels)
    accepted, needs_human = route_low_confidence(records, 0.65)
    assert len(accepted) == 2 and len(needs_human) == 2
    with pytest.raises(ValueError, match="threshold"):
        route_low_confidence(labels, 0.3)


def test_mix_preference_data():
    ai = [{"prompt": "a1", "chosen": "x", "rejected": "y", "source": "ai"}]
    human = [{"prompt": f"h{i}", "chosen": "x", "rejected": "y"} for i in range(3)]
    mixed = mix_preference_data(ai, human, seed=None)
    assert [r["source"] for r in mixed] == ["ai-harmlessness"] + ["human-helpfulness"] * 3
    assert mixed[0]["origin"] == "ai" and "origin" not in mixed[1]
    shuffled = mix_preference_data(ai, human, seed=3)
    assert sorted(r["prompt"] for r in shuffled) == ["a1", "h0", "h1", "h2"]
    assert shuffled == mix_preference_data(ai, human, seed=3)
    assert ai[0]["source"] == "ai"  # inputs are not modified
