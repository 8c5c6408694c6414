"""The arithmetic of online RL for language models, as plain functions on tensors.

PPO, RLOO and GRPO share a handful of formulas: per-token KL estimators, KL-shaped rewards,
GAE, whitening, clipped surrogate losses, group baselines and KL-coefficient controllers. They
live here, apart from rollouts and models, so each can be checked by hand on a 2x3 tensor.

Token tensors are ``[B, T]`` over *response* tokens, right-padded: ``mask[b, t]`` is true for
the real tokens of response ``b``, which occupy positions ``0 .. len_b − 1``. Masked reductions
select real tokens with ``torch.where`` rather than multiplying by the mask, so padding may hold
anything (even ``inf``/``nan``) without leaking into results.
"""

from __future__ import annotations

from typing import Literal

import torch

KLKind = Literal["k1", "k2", "k3"]


# --------------------------------------------------------------------------- masked reductions


def _zeros_where_masked(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if values.shape != mask.shape:
        raise ValueError(f"values has shape {tuple(values.shape)} but mask has shape {tuple(mask.shape)}")
    return torch.where(mask.bool(), values, torch.zeros_like(values))


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over positions where ``mask`` is true (over ``dim``, or everything).

    An all-false mask gives 0 rather than ``nan`` (the count is clamped at 1), so an empty
    minibatch cannot poison a loss.
    """
    kept = _zeros_where_masked(values, mask)
    count = mask.bool().sum() if dim is None else mask.bool().sum(dim)
    total = kept.sum() if dim is None else kept.sum(dim)
    return total / count.clamp(min=1).to(values.dtype)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked values (a scalar); unbiased (Bessel-corrected) by default, as TRL's
    ``masked_var``. Raises when the mask holds too few tokens for the estimate."""
    n = int(mask.bool().sum())
    if n == 0 or (unbiased and n < 2):
        raise ValueError(f"masked_var needs at least {2 if unbiased else 1} real token(s), the mask has {n}")
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        var = var * n / (n - 1)
    return var


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise ``values`` to zero mean and unit (unbiased) variance over the real tokens.

    As TRL's ``masked_whiten``: ``(x − mean) / sqrt(var + 1e-8)``; with ``shift_mean=False`` the
    mean is added back (only the scale changes), which is how value targets are whitened. Padding
    positions are transformed too, not zeroed; multiply by the mask if that matters.
    """
    mean = masked_mean(values, mask)
    var = masked_var(values, mask, unbiased=True)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 − Var(returns − values) / Var(returns)`` over real tokens (a scalar).

    1 means the critic predicts the returns exactly, 0 means it does no better than their mean,
    negative means worse. ``nan`` when the returns have no variance (as Stable-Baselines3).
    """
    var_returns = masked_var(returns, mask, unbiased=False)
    if float(var_returns) == 0.0:
        return torch.tensor(float("nan"), dtype=returns.dtype, device=returns.device)
    return 1.0 - masked_var(returns - values, mask, unbiased=False) / var_returns


def entropy_from_logits(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-position entropy (nats) of ``softmax(logits)`` over the last axis: shape ``logits.shape[:-1]``.

    ``-Σ p log p`` with ``p log p`` taken as 0 where ``p = 0`` (so ``-inf`` logits from top-k/top-p
    filtering are fine). With ``mask``, padding positions are set to 0; reduce with ``masked_mean``.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    entropy = -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)
    if mask is not None:
        entropy = _zeros_where_masked(entropy, mask)
    return entropy


# --------------------------------------------------------------------------- KL


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: KLKind = "k1") -> torch.Tensor:
    """Per-token estimators of KL(π‖ref) from samples of π (Schulman, "Approximating KL divergence").

    With ``d = logp − ref_logp`` (so the ratio ref/π is ``exp(−d)``):

    * ``k1 = d``: unbiased, high variance, can be negative per token;
    * ``k2 = d² / 2``: biased, low variance, always ≥ 0;
    * ``k3 = exp(−d) − 1 + d``: unbiased and always ≥ 0 (GRPO's choice).
    """
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(f"logprobs {tuple(logprobs.shape)} and ref_logprobs {tuple(ref_logprobs.shape)} differ in shape")
    d = logprobs - ref_logprobs
    if kind == "k1":
        return d
    if kind == "k2":
        return 0.5 * d**2
    if kind == "k3":
        return torch.expm1(-d) + d
    raise ValueError(f"kind must be 'k1', 'k2' or 'k3', got {kind!r}")


def _check_right_padded(mask: torch.Tensor) -> torch.Tensor:
    if mask.dim() != 2:
        raise ValueError(f"mask must be [B, T], got shape {tuple(mask.shape)}")
    m = mask.bool()
    if m.shape[1] > 1 and bool((m[:, 1:] & ~m[:, :-1]).any()):
        raise ValueError("mask must be right-padded: real tokens first, then padding, with no holes")
    return m


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards ``[B, T]``: ``−kl_coef · kl`` on every real token, plus the sequence's
    score on its last real token (Ziegler et al. / InstructGPT reward shaping); 0 on padding."""
    m = _check_right_padded(mask)
    if scores.shape != (m.shape[0],):
        raise ValueError(f"scores must have shape ({m.shape[0]},), got {tuple(scores.shape)}")
    lengths = m.sum(1)
    if bool((lengths == 0).any()):
        raise ValueError(f"responses {torch.nonzero(lengths == 0).view(-1).tolist()} have no real tokens to put the score on")
    rewards = _zeros_where_masked(-kl_coef * kl, m)
    rows = torch.arange(m.shape[0], device=mask.device)
    rewards[rows, lengths - 1] += scores.to(rewards.dtype)
    return rewards


# --------------------------------------------------------------------------- advantages


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded response tokens; returns ``(advantages, returns)``.

    ``δ_t = r_t + γ V_{t+1} − V_t`` with ``V = 0`` after the last real token (the episode ends
    there: no bootstrap), and ``A_t = δ_t + γλ A_{t+1}``. ``returns = A + V`` are the value
    targets. Both outputs are 0 on padding.
    """
    m = _check_right_padded(mask)
    if rewards.shape != m.shape or values.shape != m.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)}, values {tuple(values.shape)} and mask {tuple(m.shape)} must match")
    r = _zeros_where_masked(rewards, m)
    v = _zeros_where_masked(values, m)
    steps = m.shape[1]
    advantages = torch.zeros_like(r)
    next_adv = torch.zeros_like(r[:, 0])
    next_value = torch.zeros_like(r[:, 0])
    for t in reversed(range(steps)):
        delta = r[:, t] + gamma * next_value - v[:, t]
        adv = torch.where(m[:, t], delta + gamma * lam * next_adv, torch.zeros_like(delta))
        advantages[:, t] = adv
        next_adv, next_value = adv, v[:, t]
    returns = _zeros_where_masked(advantages + v, m)
    return advantages, returns


def _groups(scores: torch.Tensor, k: int) -> torch.Tensor:
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D ([prompts * k], grouped by prompt), got shape {tuple(scores.shape)}")
    if k < 2:
        raise ValueError(f"group baselines need k >= 2 samples per prompt, got k={k}")
    if scores.numel() == 0 or scores.numel() % k:
        raise ValueError(f"{scores.numel()} scores cannot be split into groups of k={k}")
    return scores.view(-1, k)


def rloo_advantages(scores: torch.Tensor, k: int) -> torch.Tensor:
    """REINFORCE leave-one-out (Ahmadian et al.): each sample's baseline is the mean score of the
    other ``k − 1`` samples of its prompt. ``scores`` is ``[P·k]`` with each prompt's ``k``
    samples contiguous; the result has the same shape."""
    grouped = _groups(scores, k)
    baseline = (grouped.sum(1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).reshape(scores.shape)


def grpo_advantages(scores: torch.Tensor, k: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO (Shao et al.): score minus its group's mean, divided by the group's (unbiased) std
    plus ``eps`` when ``scale`` (as TRL; ``scale=False`` is Dr. GRPO's unscaled variant)."""
    grouped = _groups(scores, k)
    centred = grouped - grouped.mean(1, keepdim=True)
    if scale:
        centred = centred / (grouped.std(1, keepdim=True, unbiased=True) + eps)
    return centred.reshape(scores.shape)


# --------------------------------------------------------------------------- PPO losses


def ppo_policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate ``mean(max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)))`` over real tokens, ``ρ = exp(logp − old)``.

    Metrics: ``clipfrac`` (share of tokens where the clipped term is the larger one, i.e. active)
    and ``approx_kl`` = ``0.5 · mean((logp − old)²)``, the k2 estimator TRL's PPO logs (low
    variance, always ≥ 0; a drift gauge between the sampling and the current policy).
    """
    if not clip_range > 0:
        raise ValueError(f"clip_range must be > 0, got {clip_range}")
    log_ratio = _zeros_where_masked(logprobs - old_logprobs, mask)
    ratio = torch.exp(log_ratio)
    adv = _zeros_where_masked(advantages, mask)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        metrics = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": 0.5 * masked_mean(log_ratio.detach() ** 2, mask),
        }
    return loss, metrics


def ppo_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip_range_value: float | None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``0.5 · mean(max((V − R)², (V_clip − R)²))`` over real tokens, ``V_clip = old + clip(V − old, ±c)``.

    Clipping keeps the critic from jumping far from the values the advantages were computed
    with; ``clip_range_value=None`` disables it (plain ``0.5 · mean((V − R)²)``).
    Metric: ``vf_clipfrac``, share of tokens where the clipped error is the larger one.
    """
    err = _zeros_where_masked(values - returns, mask) ** 2
    if clip_range_value is None:
        loss = 0.5 * masked_mean(err, mask)
        return loss, {"vf_clipfrac": torch.zeros((), dtype=values.dtype, device=values.device)}
    if not clip_range_value > 0:
        raise ValueError(f"clip_range_value must be > 0 or None, got {clip_range_value}")
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    clipped_err = _zeros_where_masked(clipped_values - returns, mask) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, clipped_err), mask)
    with torch.no_grad():
        metrics = {"vf_clipfrac": masked_mean((clipped_err > err).float(), mask)}
    return loss, metrics


# --------------------------------------------------------------------------- KL controllers


class FixedKLController:
    """A constant KL coefficient (``update`` is a no-op); ``value`` is read by the trainer."""

    def __init__(self, kl_coef: float) -> None:
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt."""


class AdaptiveKLController:
    """Ziegler et al. (2019): steer the KL coefficient so the measured KL tracks ``target``.

    ``e = clip(KL / target − 1, −0.2, 0.2)``; ``β ← β · (1 + e · n_steps / horizon)``. The clip
    bounds how fast β moves on one noisy batch; ``horizon`` (in samples) sets the time scale.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int) -> None:
        if not target > 0 or not horizon > 0:
            raise ValueError(f"target and horizon must be > 0, got target={target}, horizon={horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
