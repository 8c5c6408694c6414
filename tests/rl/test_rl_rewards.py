"""Reward sources and their weighted mix."""

from __future__ import annotations

import sys

import pytest

from alignkit.train.rewards import build_reward, combine, load_reward_fn, parse_reward


def test_parse_reward_weights():
    assert parse_reward("rm:out/rm, 0.5*python:my.mod:fn") == [(1.0, "rm:out/rm"), (0.5, "python:my.mod:fn")]
    assert parse_reward("sandbox") == [(1.0, "sandbox")]
    with pytest.raises(ValueError, match="weight before"):
        parse_reward("half*sandbox")
    with pytest.raises(ValueError, match="no reward given"):
        parse_reward(" , ")


def test_combine_is_the_weighted_sum_and_logs_each_source():
    length = lambda ps, rs: [float(len(r)) for r in rs]  # noqa: E731
    has_a = lambda ps, rs: [1.0 if "a" in r else 0.0 for r in rs]  # noqa: E731
    mixed = combine([("length", 0.5, length), ("has_a", -2.0, has_a)])
    # "abc": 0.5*3 - 2*1 = -0.5 ; "xy": 0.5*2 - 0 = 1.0
    assert mixed(["p", "q"], ["abc", "xy"]) == [-0.5, 1.0]
    assert mixed.last == {"length": 2.5, "has_a": 0.5}


def test_combine_rejects_wrong_count_and_non_finite_scores():
    with pytest.raises(ValueError, match="returned 1 scores for 2 responses"):
        combine([(1.0, lambda ps, rs: [0.0])])(["p", "q"], ["a", "b"])
    with pytest.raises(ValueError, match="non-finite"):
        combine([(1.0, lambda ps, rs: [float("inf")] * len(rs))])(["p"], ["a"])


def test_python_spec_imports_a_user_function(tmp_path, monkeypatch):
    (tmp_path / "my_rules.py").write_text("def shouty(prompt, response):\n    return response.count('!') + len(prompt) / 100\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = load_reward_fn("python:my_rules:shouty")
    assert fn(["ab", "abcd"], ["hi!!", "no"]) == [2.02, 0.04]
    reward = build_reward("2*python:my_rules:shouty")
    assert reward(["ab"], ["!"]) == [2 * 1.02]
    sys.modules.pop("my_rules", None)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("python:no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz'"),
        ("python:os:no_such_fn", "has no attribute 'no_such_fn'"),
        ("python:justaname", "expected python:package.module:function"),
        ("magic:thing", "unknown reward spec 'magic:thing'"),
        ("rm:", "needs the reward model folder"),
    ],
)
def test_bad_specs_say_what_was_expected(spec, message):
    with pytest.raises(ValueError, match=message):
        load_reward_fn(spec)


def test_missing_reward_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_reward_fn(f"rm:{tmp_path / 'nope'}")


def test_sandbox_spec_is_the_worlds_utility():
    from alignkit.sandbox import build_world

    world = build_world(0)
    prompt = world.prompts("train", n=1)[0].text
    responses = ["I don't know.", "I can't help with that."]
    expected = [world.score(prompt, r).utility for r in responses]
    assert load_reward_fn("sandbox")([prompt, prompt], responses) == expected
