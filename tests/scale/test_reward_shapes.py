"""alignkit rewards in TRL's, verl's and OpenRLHF's call shapes (issue 20)."""

from __future__ import annotations

import sys

import datasets
import httpx
import pytest
from typer.testing import CliRunner

from alignkit.ai.server import BackgroundServer
from alignkit.ai.serving.reward_server import make_reward_app
from alignkit.cli import app
from alignkit.train.reward_adapters import completion_text, openrlhf_rewards, trl_reward, verl_compute_score
from alignkit.train.rewards import build_reward

RULES = """
def exact(prompt, response, label=None):
    # 1 when the ground truth appears in the response, plus a small length term; prompts may be chat lists
    text = prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt)
    return float(label is not None and label in response) + len(response) / 100 + len(text) / 10000


def brevity(prompt, response):
    return -len(response) / 10
"""


@pytest.fixture()
def rules(tmp_path, monkeypatch):
    (tmp_path / "shape_rules.py").write_text(RULES)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "python:shape_rules:exact"
    sys.modules.pop("shape_rules", None)


def test_trl_signature_standard_and_conversational(rules):
    f = trl_reward(f"{rules},0.5*python:shape_rules:brevity")
    assert f.__name__ == "alignkit_python_shape_rules_exact_0_5_python_shape_rules_brevity"
    # The keyword call GRPOTrainer makes: prompts, completions, completion_ids and the dataset's other columns.
    got = f(
        prompts=["say blue", "say red"],
        completions=["blue sky", "green"],
        completion_ids=[[1], [2]],
        ground_truth=["blue", "red"],
    )
    hand = [1 + 8 / 100 + 8 / 10000 - 0.5 * 0.8, 0 + 5 / 100 + 7 / 10000 - 0.5 * 0.5]
    assert got == pytest.approx(hand)
    chat = f(
        prompts=[[{"role": "user", "content": "say blue"}]],
        completions=[[{"role": "assistant", "content": "blue sky"}]],
        ground_truth=["blue"],
        trainer_state=None,
    )
    assert chat == pytest.approx(hand[:1])
    # No ground-truth column: python functions get label=None.
    assert f(prompts=["say blue"], completions=["blue sky"]) == pytest.approx([hand[0] - 1])
    assert trl_reward(rules, label_column="answer")(["p"], ["x y"], answer=["y"], ground_truth=["nope"])[0] > 1
    with pytest.raises(ValueError, match="neither a string"):
        completion_text(42)


def test_a_real_trl_grpo_step_calls_it(rules, tiny, tmp_path):
    """One GRPOTrainer step on the tiny model: TRL calls the adapter and logs it under its name."""
    import copy

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = tiny
    seen = []
    f = trl_reward(rules)

    def spy(prompts, completions, **kwargs):
        out = f(prompts, completions, **kwargs)
        seen.append((kwargs["ground_truth"], out))
        return out

    spy.__name__ = f.__name__
    rows = [{"prompt": [{"role": "user", "content": q}], "ground_truth": a} for q, a in [("sky?", "blue"), ("one two", "three")]]
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"), max_steps=1, per_device_train_batch_size=4, num_generations=2, max_completion_length=4,
        report_to=[], use_cpu=True, logging_steps=1, save_strategy="no",
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=copy.deepcopy(model),
        reward_funcs=[spy],
        args=args,
        train_dataset=Dataset.from_list(rows * 2),
        processing_class=tokenizer,
    )
    trainer.train()
    labels, scores = seen[0]
    assert sorted(labels) == ["blue", "blue", "three", "three"] and len(scores) == 4
    logged = trainer.state.log_history[0]
    assert logged[f"rewards/{f.__name__}/mean"] == pytest.approx(sum(scores) / 4, abs=1e-6)


def test_verl_compute_score(rules):
    compute_score = verl_compute_score(rules)
    # verl calls it with keywords, one response at a time; the prompt travels in extra_info.
    s = compute_score(
        data_source="alignkit", solution_str="it is blue", ground_truth="blue", extra_info={"prompt": "sky?", "index": 0}
    )
    assert s == pytest.approx(1 + 10 / 100 + 4 / 10000)
    chat = compute_score("alignkit", "red", "blue", {"prompt": [{"role": "user", "content": "sky?"}]})
    assert chat == pytest.approx(3 / 100 + 4 / 10000)
    with pytest.raises(ValueError, match="extra_info"):
        compute_score(data_source="x", solution_str="a", ground_truth="b", extra_info={"index": 3})


def test_verl_export_feeds_verl_compute_score(rules, tmp_path):
    """What `alignkit data export --to verl` writes is what verl hands compute_score: the prompt
    travels in extra_info, so the same reward scores it without a conversion script."""
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "sky?", "ground_truth": "blue"}\n{"prompt": "grass?", "ground_truth": "green"}\n')
    out = tmp_path / "train.parquet"
    result = CliRunner().invoke(app, ["data", "export", str(data), "--to", "verl", "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = datasets.load_dataset("parquet", data_files=str(out), split="train")
    compute_score = verl_compute_score(rules)
    row = rows[0]
    assert row["extra_info"]["prompt"] == [{"role": "user", "content": "sky?"}]
    score = compute_score(row["data_source"], "it is blue", row["reward_model"]["ground_truth"], row["extra_info"])
    assert score == pytest.approx(1 + 10 / 100 + 4 / 10000)


def test_verl_and_trl_sandbox_scores_match_the_rl_reward():
    sandbox = build_reward("sandbox")
    prompt, response = "What is the river of Varnholt?", "I don't know."
    direct = sandbox([prompt], [response])[0]
    assert verl_compute_score("sandbox")("alignkit", response, "", {"prompt": prompt}) == pytest.approx(direct)
    assert trl_reward("sandbox")([prompt], [response]) == pytest.approx([direct])


def test_openrlhf_remote_rm_protocol(rules):
    reward = build_reward(rules)
    prompts = ["<|user|>\nsay blue<|end|>\n<|assistant|>\n", "<|user|>\nsay red<|end|>\n<|assistant|>\n"]
    responses = ["blue it is", "no"]
    payload = {"query": [p + r for p, r in zip(prompts, responses)], "prompts": prompts, "labels": ["blue", "red"]}
    expected = reward(prompts, responses, ["blue", "red"])
    assert expected[0] > 1 > expected[1]
    with BackgroundServer(make_reward_app(reward, max_request_bytes=4096)) as server:
        base = server.url.removesuffix("/v1")
        r = httpx.post(f"{base}/get_reward", json=payload)
        assert r.status_code == 200
        body = r.json()
        assert body["rewards"] == pytest.approx(expected) and body["scores"] == body["rewards"]
        assert "reward/python:shape_rules:exact" in body["extra_logs"]
        # A query that does not start with its prompt, a bad body and an oversized one: 400, 400, 413.
        bad = httpx.post(f"{base}/get_reward", json={**payload, "query": ["x", "y"]})
        assert bad.status_code == 400 and "does not start with its prompt" in bad.json()["error"]["message"]
        assert httpx.post(f"{base}/get_reward", json=[1, 2]).status_code == 400
        assert httpx.post(f"{base}/get_reward", json={"query": ["x" * 5000]}).status_code == 413
        assert httpx.get(f"{base}/health").json() == {"status": "ok"}
    # Older OpenRLHF sends only the queries: scored with empty prompts, no labels.
    assert openrlhf_rewards(reward, {"query": ["blue"]})["rewards"] == pytest.approx([4 / 100])
