"""PPO and RLOO/GRPO end to end on the tiny model with a rule reward: learning, resume, guards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rl_helpers import PROMPTS, StopBias, count_e, read_metrics
from transformers import AutoModelForCausalLM

from alignkit.data import encode_prompt
from alignkit.train.config import GRPOConfig, PPOConfig, RLOOConfig
from alignkit.train.loop import TrainingDiverged, latest_checkpoint
from alignkit.train.ppo import build_critic, critic_values, run_ppo
from alignkit.train.rloo import run_rloo
from alignkit.train.rollout import sample, stop_token_ids


def _ppo_config(prompts_file: Path, output: Path, **overrides) -> PPOConfig:
    base = dict(
        data=prompts_file,
        output=output,
        max_steps=30,
        rollout_batch_size=16,
        minibatch_size=8,
        ppo_epochs=2,
        max_new_tokens=8,
        lr=3e-3,
        kl_coef=0.01,
        progress=False,
        save_every=100,
    )
    base.update(overrides)
    return PPOConfig(**base)


def _rloo_config(prompts_file: Path, output: Path, cls=RLOOConfig, **overrides) -> RLOOConfig:
    base = dict(
        data=prompts_file,
        output=output,
        max_steps=26,
        rollout_batch_size=4,
        k=4,
        minibatch_size=16,
        max_new_tokens=8,
        lr=3e-3,
        kl_coef=0.01,
        progress=False,
        save_every=100,
    )
    base.update(overrides)
    return cls(**base)


def _learned(history: list[dict]) -> tuple[float, float]:
    first = sum(h["score"] for h in history[:5]) / 5
    last = sum(h["score"] for h in history[-5:]) / 5
    return first, last


def test_ppo_raises_a_rule_reward(tmp_path, prompts_file, fresh_policy):
    output = run_ppo(_ppo_config(prompts_file, tmp_path / "ppo", max_steps=16), reward_fn=count_e, policy=fresh_policy())
    history = read_metrics(output)
    first, last = _learned(history)
    assert last > first + 1.0, (first, last)  # reward counts 'e's: about 0.3 at the start
    for key in (
        "score",
        "kl",
        "entropy",
        "clipfrac",
        "approx_kl",
        "value_loss",
        "explained_variance",
        "response_length",
        "no_stop_share",
    ):
        assert all(key in h for h in history), key
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # policy == reference before any update
    assert (output / "value_model" / "config.json").exists()
    AutoModelForCausalLM.from_pretrained(output)  # the saved policy loads back


@pytest.mark.parametrize("cls", [RLOOConfig, GRPOConfig])
def test_rloo_and_grpo_raise_a_rule_reward(tmp_path, prompts_file, fresh_policy, cls):
    output = run_rloo(_rloo_config(prompts_file, tmp_path / cls.__name__, cls=cls), reward_fn=count_e, policy=fresh_policy())
    first, last = _learned(read_metrics(output))
    assert last > first + 1.0, (first, last)


def test_no_stop_penalty_is_subtracted_from_unstopped_responses(tmp_path, prompts_file, fresh_policy):
    model, tok = fresh_policy()
    records = []
    config = _rloo_config(prompts_file, tmp_path / "pen", max_steps=2, no_stop_penalty=1.5, max_new_tokens=6)
    run_rloo(
        config,
        reward_fn=lambda p, r: [0.25] * len(r),
        policy=(StopBias(model, tok.eos_token_id, 2.0), tok),
        on_step_end=lambda step, rec: records.append(rec),
    )
    for rec in records:
        assert 0 < rec["no_stop_share"] < 1  # both kinds of response are present
        # mean(score - 1.5 * [not stopped]) = 0.25 - 1.5 * share
        assert rec["reward"] == pytest.approx(0.25 - 1.5 * rec["no_stop_share"], abs=1e-6)
        assert rec["score"] == pytest.approx(0.25)


def test_critic_reads_value_before_each_response_token(tiny):
    """critic_values on a left-padded rollout == head outputs of each sequence scored alone."""
    model, tok = tiny
    critic = build_critic(model, tok.pad_token_id, None, seed=0)
    assert torch.count_nonzero(critic_values(critic, _rollout(model, tok))) == 0  # zero head: values start at 0
    with torch.no_grad():
        for p in critic.score.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(critic.model.embed_tokens.weight, model.model.embed_tokens.weight)  # backbone copied
    rollout = _rollout(model, tok)
    with torch.no_grad():
        values = critic_values(critic, rollout)
        for row, prompt in enumerate(_prompt_ids(tok)):
            n = int(rollout.response_mask[row].sum())
            ids = torch.tensor(prompt + rollout.response_ids[row, :n].tolist())[None]
            hidden = critic.model(input_ids=ids).last_hidden_state
            alone = critic.score(hidden)[0, :, 0]
            # value of the state before response token j is read at position len(prompt) - 1 + j
            torch.testing.assert_close(values[row, :n], alone[len(prompt) - 1 : len(prompt) - 1 + n], rtol=1e-4, atol=1e-5)


def _prompt_ids(tok):
    return [encode_prompt(tok, p) for p in PROMPTS]


def _rollout(model, tok):
    return sample(
        model,
        _prompt_ids(tok),
        pad_id=tok.pad_token_id,
        stop_ids=stop_token_ids(tok),
        max_new_tokens=6,
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
    )


class Crash(RuntimeError):
    pass


def test_killed_and_resumed_ppo_run_matches_uninterrupted_run(tmp_path, prompts_file, fresh_policy):
    kw = dict(max_steps=6, save_every=2, rollout_batch_size=8, minibatch_size=4, adaptive_kl=True, kl_coef=0.05)
    full = run_ppo(_ppo_config(prompts_file, tmp_path / "full", **kw), reward_fn=count_e, policy=fresh_policy())

    def crash(step, record):
        if step == 3:
            raise Crash("killed")

    config = _ppo_config(prompts_file, tmp_path / "resumed", **kw)
    with pytest.raises(Crash):
        run_ppo(config, reward_fn=count_e, policy=fresh_policy(), on_step_end=crash)
    assert latest_checkpoint(config.output).name == "step-0000002"
    resumed = run_ppo(config, reward_fn=count_e, policy=fresh_policy())

    full_metrics, resumed_metrics = read_metrics(full), read_metrics(resumed)
    assert [m["step"] for m in resumed_metrics] == [1, 2, 3, 4, 5, 6]
    drop = {"gen_tokens_per_s", "step_time_s"}
    for a, b in zip(full_metrics, resumed_metrics):
        assert {k: v for k, v in a.items() if k not in drop} == pytest.approx(
            {k: v for k, v in b.items() if k not in drop}, rel=1e-5, abs=1e-6
        )
    assert full_metrics[-1]["kl_coef"] != 0.05  # the adaptive controller moved (and its state was restored)
    a = AutoModelForCausalLM.from_pretrained(full).state_dict()
    b = AutoModelForCausalLM.from_pretrained(resumed).state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    assert json.loads((resumed / "alignkit_run.json").read_text())["resumed_from"] == 2


def test_nan_reward_stops_with_clear_message_and_keeps_last_checkpoint(tmp_path, prompts_file, fresh_policy):
    calls = []

    def flaky(prompts, responses):
        calls.append(1)
        return [float("nan") if len(calls) >= 3 else 0.5] * len(responses)

    config = _rloo_config(prompts_file, tmp_path / "nan", max_steps=5, save_every=1)
    with pytest.raises(TrainingDiverged, match="loss became nan at step 3.*step-0000002"):
        run_rloo(config, reward_fn=flaky, policy=fresh_policy())
    assert latest_checkpoint(config.output).name == "step-0000002"


def test_exploding_kl_stops_the_run(tmp_path, prompts_file, fresh_policy):
    config = _rloo_config(prompts_file, tmp_path / "kl", max_steps=5, save_every=1, lr=5e-2, max_kl=1e-3)
    # step 1's rollout comes from the starting policy (KL 0); its update moves the policy, so step 2's
    # rollout exceeds the limit. Checkpoint 1 holds that moved policy: no earlier one is known good.
    with pytest.raises(TrainingDiverged, match=r"KL to the reference reached .* at step 2 \(> --max-kl 0.001\).*none kept"):
        run_rloo(config, reward_fn=count_e, policy=fresh_policy())
    assert latest_checkpoint(config.output).name == "step-0000001"


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_lora_reference_is_the_adapter_free_model(tmp_path, prompts_file, fresh_policy, algo):
    from alignkit.models import apply_lora
    from alignkit.models.config import LoraSettings

    model, tok = fresh_policy()
    base_before = {k: v.clone() for k, v in model.state_dict().items()}
    policy = (apply_lora(model, LoraSettings(r=4)), tok)
    records = []
    if algo == "ppo":
        config = _ppo_config(prompts_file, tmp_path / algo, max_steps=3, lora=True, lr=1e-2)
        run_ppo(config, reward_fn=count_e, policy=policy, on_step_end=lambda s, r: records.append(r))
    else:
        config = _rloo_config(prompts_file, tmp_path / algo, cls=GRPOConfig, max_steps=3, lora=True, lr=1e-2)
        run_rloo(config, reward_fn=count_e, policy=policy, on_step_end=lambda s, r: records.append(r))
    assert records[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # LoRA starts as the identity
    assert records[-1]["kl"] > 1e-3  # the adapter moved away from the (adapter-free) reference
    base = policy[0].get_base_model().state_dict()
    for name, before in base_before.items():  # base weights frozen: only the adapter trained
        key = next(k for k in base if k.replace("base_layer.", "") == name)
        torch.testing.assert_close(base[key], before)


def test_critic_can_start_from_a_reward_model_folder(tmp_path, tiny):
    """value_model=PATH loads that sequence classifier, head included (InstructGPT's initialisation)."""
    import copy

    from transformers import AutoModelForSequenceClassification

    model, tok = tiny
    config = copy.deepcopy(model.config)
    config.num_labels = 1
    rm = AutoModelForSequenceClassification.from_config(config)
    torch.nn.init.normal_(rm.score.weight, generator=torch.Generator().manual_seed(3))
    rm.save_pretrained(tmp_path / "rm")
    critic = build_critic(model, tok.pad_token_id, str(tmp_path / "rm"), seed=0)
    for (name, a), b in zip(critic.state_dict().items(), rm.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert torch.count_nonzero(critic_values(critic, _rollout(model, tok))) > 0
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        build_critic(model, tok.pad_token_id, str(tmp_path / "missing"), seed=0)


def test_checkpoint_before_picks_newest_complete_earlier_checkpoint(tmp_path):
    from alignkit.train.loop import checkpoint_before

    for name, step in [("step-0000002", 2), ("step-0000004", 4), ("step-0000006", 6), ("step-0000008.tmp", 8)]:
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        (tmp_path / "checkpoints" / name / "trainer_state.json").write_text(json.dumps({"step": step}))
    assert checkpoint_before(tmp_path, 6).name == "step-0000004"
    assert checkpoint_before(tmp_path, 9).name == "step-0000006"  # the .tmp one is half-written
    assert checkpoint_before(tmp_path, 2) is None


def _step_data(model, tok, scores, kl_coef, prompts=None):
    from alignkit.train.rl_loop import StepData

    rollout = sample(
        model,
        prompts or _prompt_ids(tok),
        pad_id=tok.pad_token_id,
        stop_ids=stop_token_ids(tok),
        max_new_tokens=5,
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    rollout.response_mask[0, 3:] = False  # ragged lengths: row 0 has 3 real tokens
    gen = torch.Generator().manual_seed(4)
    old = -torch.rand(rollout.response_ids.shape, generator=gen)
    ref = -torch.rand(rollout.response_ids.shape, generator=gen)
    s = torch.tensor(scores, dtype=torch.float32)
    return StepData(rollout, [], [], s, s, old, ref, kl_coef)


def test_ppo_prepare_folds_kl_into_rewards_and_runs_gae(tiny):
    from alignkit.train.ppo import PPO

    model, tok = tiny
    critic = build_critic(model, tok.pad_token_id, None, seed=0)  # zero head: V = 0 everywhere
    data = _step_data(model, tok, [1.0, -2.0, 0.5, 3.0], kl_coef=0.5)
    config = _ppo_config(Path("p.jsonl"), Path("o"), gamma=1.0, lam=1.0, kl_estimator="k1", whiten_advantages=False)
    PPO(config, critic).prepare(data)
    # With V = 0 and gamma = lam = 1, the return at token t is the sum of rewards from t to the end:
    # score (on the last real token) - 0.5 * sum_{u >= t} (old_u - ref_u).
    mask = data.mask
    for b in range(4):
        n = int(mask[b].sum())
        for t in range(mask.shape[1]):
            if t < n:
                expected = float(data.scores[b]) - 0.5 * sum(
                    float(data.old_logprobs[b, u] - data.ref_logprobs[b, u]) for u in range(t, n)
                )
            else:
                expected = 0.0
            assert float(data.extra["returns"][b, t]) == pytest.approx(expected, abs=1e-5)
    torch.testing.assert_close(data.extra["advantages"], data.extra["returns"])  # A = R - V with V = 0

    whitened = _step_data(model, tok, [1.0, -2.0, 0.5, 3.0], kl_coef=0.5)
    PPO(config.model_copy(update={"whiten_advantages": True}), critic).prepare(whitened)
    adv, m = whitened.extra["advantages"], whitened.mask
    assert float(adv[m].mean()) == pytest.approx(0.0, abs=1e-5) and float(adv[m].std()) == pytest.approx(1.0, abs=1e-3)
    assert torch.count_nonzero(adv[~m]) == 0


def test_rloo_prepare_gives_leave_one_out_advantage_to_every_token(tiny):
    from alignkit.train.rloo import RLOO

    model, tok = tiny
    data = _step_data(model, tok, [1.0, 2.0, 3.0, 4.0], kl_coef=0.0, prompts=_prompt_ids(tok)[:1] * 4)
    RLOO(_rloo_config(Path("p.jsonl"), Path("o"), k=4, kl_coef=0.0)).prepare(data)
    # baselines: mean of the other three = 3, 8/3, 7/3, 2 -> advantages -2, -2/3, 2/3, 2
    expected = torch.tensor([-2.0, -2 / 3, 2 / 3, 2.0])[:, None] * data.mask
    torch.testing.assert_close(data.extra["advantages"], expected)

    with_kl = _step_data(model, tok, [1.0, 2.0, 3.0, 4.0], kl_coef=1.0, prompts=_prompt_ids(tok)[:1] * 4)
    RLOO(_rloo_config(Path("p.jsonl"), Path("o"), k=4, kl_coef=1.0, kl_in="reward", kl_estimator="k1")).prepare(with_kl)
    shaped = with_kl.scores - ((with_kl.old_logprobs - with_kl.ref_logprobs) * with_kl.mask).sum(-1)
    loo = shaped - (shaped.sum() - shaped) / 3
    torch.testing.assert_close(with_kl.extra["advantages"], loo[:, None] * with_kl.mask)
