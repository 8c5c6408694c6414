"""Online-RL arithmetic against hand-worked values (arithmetic in the comments) and known identities."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.train.rl_math import (
    AdaptiveKLController,
    FixedKLController,
    entropy_from_logits,
    explained_variance,
    gae,
    grpo_advantages,
    kl_penalty,
    masked_mean,
    masked_var,
    ppo_policy_loss,
    ppo_value_loss,
    rloo_advantages,
    token_rewards,
    whiten,
)

t = torch.tensor


# --------------------------------------------------------------------------- masked reductions


def test_masked_mean_and_var_by_hand():
    values = t([[1.0, 2.0, 3.0], [4.0, 99.0, math.nan]])
    mask = t([[True, True, True], [True, False, False]])
    # real values 1, 2, 3, 4: mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert float(masked_mean(values, mask)) == pytest.approx(2.5)
    assert float(masked_var(values, mask)) == pytest.approx(5 / 3)  # unbiased: 5 / (4 - 1)
    assert float(masked_var(values, mask, unbiased=False)) == pytest.approx(1.25)  # 5 / 4
    torch.testing.assert_close(masked_mean(values, mask, dim=1), t([2.0, 4.0]))  # rows: (1+2+3)/3, 4/1
    assert float(masked_mean(values, torch.zeros_like(mask))) == 0.0  # empty mask: 0, not nan
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(values, t([[True, False, False], [False, False, False]]))


def test_whiten_by_hand():
    values = t([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]])
    mask = t([[1, 1, 1], [1, 0, 0]])
    # mean 2.5, unbiased std sqrt(5/3) = 1.29099445; (x - 2.5) / 1.29099445
    expected = t([-1.5, -0.5, 0.5, 1.5]) / 1.29099445
    out = whiten(values, mask)
    torch.testing.assert_close(out[mask.bool()], expected, rtol=1e-5, atol=1e-6)
    out = whiten(values, mask, shift_mean=False)  # only rescaled: mean 2.5 kept
    torch.testing.assert_close(out[mask.bool()], expected + 2.5, rtol=1e-5, atol=1e-6)


def test_explained_variance_by_hand():
    returns = t([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    assert float(explained_variance(returns, returns, mask)) == pytest.approx(1.0)
    assert float(explained_variance(torch.full_like(returns, 2.5), returns, mask)) == pytest.approx(0.0)
    # residuals [-1, 1, -1, 1]: variance 1; Var(returns) = 1.25 -> 1 - 1/1.25 = 0.2
    assert float(explained_variance(t([[2.0, 1.0], [4.0, 3.0]]), returns, mask)) == pytest.approx(0.2)
    assert math.isnan(float(explained_variance(returns, torch.ones_like(returns), mask)))


def test_entropy_by_hand():
    logits = torch.stack(
        [
            torch.zeros(3),  # uniform over 3: log 3 = 1.09861229
            torch.log(t([0.5, 0.25, 0.25])),  # -(0.5 ln 0.5 + 2 * 0.25 ln 0.25) = 0.34657359 + 0.69314718 = 1.03972077
            t([0.0, -math.inf, -math.inf]),  # one-hot: 0 (and no nan from 0 * -inf)
        ]
    )
    torch.testing.assert_close(entropy_from_logits(logits), t([1.09861229, 1.03972077, 0.0]))
    masked = entropy_from_logits(logits[None], mask=t([[True, False, True]]))
    torch.testing.assert_close(masked, t([[1.09861229, 0.0, 0.0]]))


def test_entropy_matches_trl():
    pytest.importorskip("trl")
    from trl.trainer.utils import entropy_from_logits as trl_entropy

    logits = torch.randn(3, 5, 17, generator=torch.Generator().manual_seed(0)) * 3
    torch.testing.assert_close(entropy_from_logits(logits), trl_entropy(logits), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- KL


def test_kl_estimators_by_hand():
    logp, ref = t([-1.0, -2.0]), t([-2.0, -1.0])  # d = logp - ref = [1, -1]
    torch.testing.assert_close(kl_penalty(logp, ref, "k1"), t([1.0, -1.0]))
    torch.testing.assert_close(kl_penalty(logp, ref, "k2"), t([0.5, 0.5]))  # d² / 2
    # k3 = e^-d - 1 + d: e^-1 - 1 + 1 = 0.36787944; e^1 - 1 - 1 = 0.71828183
    torch.testing.assert_close(kl_penalty(logp, ref, "k3"), t([0.36787944, 0.71828183]))
    with pytest.raises(ValueError, match="kind"):
        kl_penalty(logp, ref, "k4")  # type: ignore[arg-type]


def test_k1_and_k3_are_unbiased_kl_estimates():
    # samples x ~ p; E_p[k1] = E_p[k3] = KL(p || q) = Σ p log(p/q)
    p, q = t([0.7, 0.2, 0.1]), t([0.4, 0.4, 0.2])
    exact = float((p * (p / q).log()).sum())  # 0.7 ln 1.75 + 0.2 ln 0.5 + 0.1 ln 0.5 = 0.18378...
    x = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    logp, logq = p.log()[x], q.log()[x]
    assert float(kl_penalty(logp, logq, "k1").mean()) == pytest.approx(exact, abs=0.01)
    k3 = kl_penalty(logp, logq, "k3")
    assert float(k3.mean()) == pytest.approx(exact, abs=0.01) and bool((k3 >= 0).all())


def test_token_rewards_by_hand():
    scores = t([1.0, 2.0])
    kl = t([[0.1, 0.2, 0.3], [0.4, 0.5, 9.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    # kl_coef 0.5: row 0 [-0.05, -0.1, -0.15 + 1]; row 1 [-0.2, -0.25 + 2, 0 (padding)]
    torch.testing.assert_close(token_rewards(scores, kl, mask, 0.5), t([[-0.05, -0.1, 0.85], [-0.2, 1.75, 0.0]]))
    with pytest.raises(ValueError, match="right-padded"):
        token_rewards(scores, kl, t([[1, 0, 1], [1, 1, 0]]), 0.5)
    with pytest.raises(ValueError, match="no real tokens"):
        token_rewards(scores, kl, t([[1, 1, 1], [0, 0, 0]]), 0.5)


# --------------------------------------------------------------------------- GAE


def test_gae_by_hand():
    rewards = t([[0.0, 0.0, 1.0], [0.0, 2.0, 9.0]])
    values = t([[0.5, 0.4, 0.3], [1.0, 0.5, 7.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.9)
    # row 0: δ2 = 1 + 0 - 0.3 = 0.7, A2 = 0.7; δ1 = 0 + 0.3 - 0.4 = -0.1, A1 = -0.1 + 0.9*0.7 = 0.53;
    #        δ0 = 0 + 0.4 - 0.5 = -0.1, A0 = -0.1 + 0.9*0.53 = 0.377. returns = A + V = [0.877, 0.93, 1.0]
    # row 1: last real token t=1, no bootstrap: δ1 = 2 - 0.5 = 1.5 = A1; δ0 = 0 + 0.5 - 1 = -0.5,
    #        A0 = -0.5 + 0.9*1.5 = 0.85. returns [1.85, 2.0]; padding 0 (its reward 9 and value 7 never leak)
    torch.testing.assert_close(adv, t([[0.377, 0.53, 0.7], [0.85, 1.5, 0.0]]))
    torch.testing.assert_close(ret, t([[0.877, 0.93, 1.0], [1.85, 2.0, 0.0]]))


def test_gae_limits():
    rewards = t([[0.0, 0.0, 1.0]])
    values = t([[0.5, 0.4, 0.3]])
    mask = torch.ones(1, 3)
    # λ = 1: returns are the discounted reward-to-go, whatever the values: γ = 0.5 -> [0.25, 0.5, 1]
    adv, ret = gae(rewards, values, mask, gamma=0.5, lam=1.0)
    torch.testing.assert_close(ret, t([[0.25, 0.5, 1.0]]))
    torch.testing.assert_close(adv, t([[0.25 - 0.5, 0.5 - 0.4, 1.0 - 0.3]]))
    # λ = 0: A is the one-step TD error δ_t = r_t + γ V_{t+1} - V_t = [0.2 - 0.5, 0.15 - 0.4, 1 - 0.3]
    adv, _ = gae(rewards, values, mask, gamma=0.5, lam=0.0)
    torch.testing.assert_close(adv, t([[-0.3, -0.25, 0.7]]))


# --------------------------------------------------------------------------- PPO losses


def test_ppo_policy_loss_by_hand():
    # ratios [1.5, 0.5, 1.1] (old logprobs 0), advantages [1, 1, -2], ε = 0.2; 4th token is padding
    logp = torch.log(t([[1.5, 0.5, 1.1, 1e30]])).requires_grad_(True)
    old = torch.zeros(1, 4)
    adv = t([[1.0, 1.0, -2.0, 50.0]])
    mask = t([[1, 1, 1, 0]])
    loss, m = ppo_policy_loss(logp, old, adv, mask, clip_range=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(-0.5, -0.8) = -0.5; token 2: 2.2 both ways
    # loss = (-1.2 - 0.5 + 2.2) / 3 = 0.16666667; clipfrac = 1/3
    assert float(loss.detach()) == pytest.approx(0.5 / 3)
    assert float(m["clipfrac"]) == pytest.approx(1 / 3)
    # approx_kl = 0.5 * (ln²1.5 + ln²0.5 + ln²1.1) / 3 = 0.5 * (0.16440195 + 0.48045301 + 0.00908403) / 3
    assert float(m["approx_kl"]) == pytest.approx(0.10898983, abs=1e-6)
    loss.backward()
    # d/dlogp of -A ρ / 3 = -A ρ / 3: token 0 clipped -> 0; token 1 -0.5/3; token 2 2*1.1/3; padding 0
    torch.testing.assert_close(logp.grad, t([[0.0, -0.5 / 3, 2.2 / 3, 0.0]]))


def test_ppo_value_loss_by_hand():
    values = t([[1.0, 2.0, 0.0, 5.0]])
    old = t([[0.5, 2.1, 0.0, 0.0]])
    returns = t([[3.0, 1.0, 0.5, 0.0]])
    mask = t([[1, 1, 1, 0]])
    loss, m = ppo_value_loss(values, old, returns, mask, clip_range_value=0.2)
    # token 0: V - old = 0.5 -> clipped 0.2, V_clip = 0.7; errors (1-3)² = 4 vs (0.7-3)² = 5.29 -> 5.29 (clipped)
    # token 1: V - old = -0.1 in range: (2-1)² = 1; token 2: (0-0.5)² = 0.25
    # loss = 0.5 * (5.29 + 1 + 0.25) / 3 = 1.09; vf_clipfrac 1/3
    assert float(loss) == pytest.approx(1.09)
    assert float(m["vf_clipfrac"]) == pytest.approx(1 / 3)
    loss, m = ppo_value_loss(values, old, returns, mask, clip_range_value=None)
    assert float(loss) == pytest.approx(0.5 * (4 + 1 + 0.25) / 3)  # 0.875
    assert float(m["vf_clipfrac"]) == 0.0


# --------------------------------------------------------------------------- group baselines


def test_rloo_advantages_by_hand():
    # k = 2: groups [1, 2], [3, 6] -> each minus the other: [-1, 1, -3, 3]
    torch.testing.assert_close(rloo_advantages(t([1.0, 2.0, 3.0, 6.0]), 2), t([-1.0, 1.0, -3.0, 3.0]))
    # k = 3: [1, 2, 6], baselines (2+6)/2 = 4, (1+6)/2 = 3.5, (1+2)/2 = 1.5 -> [-3, -1.5, 4.5]
    torch.testing.assert_close(rloo_advantages(t([1.0, 2.0, 6.0]), 3), t([-3.0, -1.5, 4.5]))
    with pytest.raises(ValueError, match="groups of k=3"):
        rloo_advantages(t([1.0, 2.0, 3.0, 4.0]), 3)
    with pytest.raises(ValueError, match="k >= 2"):
        rloo_advantages(t([1.0, 2.0]), 1)


def test_grpo_advantages_by_hand():
    # [1, 2, 6]: mean 3, unbiased std sqrt((4 + 1 + 9) / 2) = sqrt(7) = 2.64575131 -> [-2, -1, 3] / (2.64575131 + 1e-4)
    torch.testing.assert_close(grpo_advantages(t([1.0, 2.0, 6.0]), 3), t([-0.75590038, -0.37795019, 1.13385056]))
    torch.testing.assert_close(grpo_advantages(t([1.0, 2.0, 6.0]), 3, scale=False), t([-2.0, -1.0, 3.0]))
    # identical scores -> 0, not nan (the eps); [1, 3]: ±1 / (sqrt(2) + 1e-4) = ±0.70705680
    torch.testing.assert_close(grpo_advantages(t([4.0, 4.0, 1.0, 3.0]), 2), t([0.0, 0.0, -0.70705680, 0.70705680]))


def test_grpo_advantages_match_trl_nanstd():
    pytest.importorskip("trl")
    from trl.trainer.utils import nanstd

    scores = torch.randn(12, generator=torch.Generator().manual_seed(3))
    grouped = scores.view(-1, 4)
    # TRL GRPOTrainer: (r - group mean) / (nanstd(group) + 1e-4)
    expected = ((grouped - grouped.mean(1, keepdim=True)) / (nanstd(grouped, dim=1).unsqueeze(1) + 1e-4)).view(-1)
    torch.testing.assert_close(grpo_advantages(scores, 4), expected)


# --------------------------------------------------------------------------- KL controllers


def test_adaptive_kl_controller_by_hand():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    ctl.update(9.0, 100)  # error 9/6 - 1 = 0.5, clipped to 0.2: 0.1 * (1 + 0.2 * 100 / 10000) = 0.1002
    assert ctl.value == pytest.approx(0.1002)
    ctl.update(3.0, 1000)  # error -0.5 -> -0.2: 0.1002 * (1 - 0.02) = 0.098196
    assert ctl.value == pytest.approx(0.098196)
    ctl.update(6.6, 1000)  # error 0.1 (unclipped): * 1.01 = 0.09917796
    assert ctl.value == pytest.approx(0.09917796)
    fixed = FixedKLController(0.05)
    fixed.update(100.0, 1000)
    assert fixed.value == 0.05
