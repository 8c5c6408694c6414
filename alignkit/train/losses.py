"""Preference-learning losses as plain functions on per-sequence log-prob (or reward) tensors.

Every function here is pure arithmetic: no model, no batch layout, no trainer state. The
objectives in ``alignkit.train`` compute summed log-probs with the one log-prob function and hand
them here, which is what lets the tests check each formula against hand-worked values and
against TRL on identical inputs.

Conventions (shared with TRL 1.16 so numbers are comparable across tools):

* inputs are 1-D tensors of shape ``[B]``: one summed log-prob (or reward) per sequence;
* every function returns ``(loss, metrics)`` where ``loss`` is a scalar tensor that carries the
  gradient and ``metrics`` maps names to *detached* scalar tensors (``nll_loss`` returns the
  scalar alone, because it is only ever an add-on term);
* probabilities are handled in log space (``logsigmoid``), never ``log(sigmoid(x))``, so a
  confident model does not produce ``-inf`` losses.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Metrics = dict[str, torch.Tensor]
DPOLossType = Literal["sigmoid", "ipo", "hinge", "robust"]
DPO_LOSS_TYPES: tuple[str, ...] = ("sigmoid", "ipo", "hinge", "robust")

# KTO paper, Eq. (8): keep (w_d * n_d) / (w_u * n_u) within [1, 4/3].
KTO_RATIO_LOW = 1.0
KTO_RATIO_HIGH = 4.0 / 3.0


def _check_same_shape(**tensors: torch.Tensor | None) -> int:
    """All given tensors are 1-D with the same length (returned); ``None`` entries are skipped."""
    shape = None
    first = ""
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"'{name}' must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 1:
            raise ValueError(f"'{name}' must be 1-D (one value per sequence), got shape {tuple(t.shape)}")
        if shape is None:
            shape, first = t.shape, name
        elif t.shape != shape:
            raise ValueError(f"'{name}' has shape {tuple(t.shape)} but '{first}' has shape {tuple(shape)}")
    if shape is None or shape[0] == 0:
        raise ValueError("expected at least one sequence, got an empty batch")
    return int(shape[0])


# --------------------------------------------------------------------------- reward model


def reward_model_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: torch.Tensor | None = None,
    center_coef: float = 0.0,
) -> tuple[torch.Tensor, Metrics]:
    """Bradley–Terry loss ``-log σ(r⁺ − r⁻ − margin)``, averaged over pairs.

    ``margin`` (Llama 2 style) asks the model to separate pairs by at least that much when the
    annotators said "significantly better". ``center_coef`` adds ``center_coef * mean((r⁺ + r⁻)²)``
    (TRL's ``center_rewards_coefficient``, from Eisenstein et al.) which pins the otherwise free
    offset of the rewards near zero, so rewards from different runs are comparable.

    Metrics: ``accuracy`` (share of pairs with r⁺ > r⁻, margin ignored), ``margin``
    (mean r⁺ − r⁻), ``rewards/chosen`` and ``rewards/rejected`` (mean r⁺ and r⁻).
    """
    _check_same_shape(chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards, margin=margin)
    if center_coef < 0:
        raise ValueError(f"center_coef must be >= 0, got {center_coef}")
    diff = chosen_rewards - rejected_rewards
    logits = diff if margin is None else diff - margin.to(diff.dtype)
    loss = -F.logsigmoid(logits).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen_rewards + rejected_rewards) ** 2).mean()
    with torch.no_grad():
        metrics = {
            "accuracy": (diff > 0).float().mean(),
            "margin": diff.mean(),
            "rewards/chosen": chosen_rewards.detach().mean(),
            "rewards/rejected": rejected_rewards.detach().mean(),
        }
    return loss, metrics


# --------------------------------------------------------------------------- DPO family


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    loss_type: DPOLossType = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Metrics]:
    """DPO and its robust variants on summed log-probs; mean over pairs.

    With ``h = (π_c − ref_c) − (π_r − ref_r)`` (log-ratio margin) and ``ε = label_smoothing``:

    * ``sigmoid``: conservative DPO, ``−(1−ε) log σ(βh) − ε log σ(−βh)``; plain DPO at ε = 0
      (TRL 1.16's ``sigmoid`` ignores label smoothing, so the two agree only at ε = 0);
    * ``robust``: Chowdhury et al., ``(−(1−ε) log σ(βh) + ε log σ(−βh)) / (1 − 2ε)``, an unbiased
      loss under a known label-flip rate ε (same as TRL);
    * ``hinge``: SLiC-style ``relu(1 − βh)`` (same as TRL);
    * ``ipo``: ``(h̄ − 1/(2β))²`` where ``h̄`` uses *length-normalised* log-ratios (each divided
      by its completion length, clamped at 1), which is what TRL does after confirming with the
      IPO authors; ``chosen_lengths``/``rejected_lengths`` are required for it.

    ``label_smoothing`` is used by ``sigmoid`` and ``robust`` only.

    Metrics (means over pairs): ``rewards/chosen`` = β(π_c − ref_c), ``rewards/rejected``,
    ``margins`` = their difference, ``accuracy`` = share with rewards/chosen > rewards/rejected.
    """
    _check_same_shape(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {DPO_LOSS_TYPES}, got {loss_type!r}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")

    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    eps = label_smoothing
    if loss_type == "ipo":
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("loss_type='ipo' needs chosen_lengths and rejected_lengths (it length-normalises log-probs)")
        h = chosen_ratio / chosen_lengths.to(chosen_ratio.dtype).clamp(min=1.0) - rejected_ratio / rejected_lengths.to(
            rejected_ratio.dtype
        ).clamp(min=1.0)
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    else:
        logits = beta * (chosen_ratio - rejected_ratio)
        if loss_type == "sigmoid":
            losses = -(1.0 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
        elif loss_type == "robust":
            losses = (-(1.0 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1.0 - 2.0 * eps)
        else:  # hinge
            losses = torch.relu(1.0 - logits)
    loss = losses.mean()

    with torch.no_grad():
        chosen_rewards = beta * chosen_ratio.detach()
        rejected_rewards = beta * rejected_ratio.detach()
        metrics = {
            "rewards/chosen": chosen_rewards.mean(),
            "rewards/rejected": rejected_rewards.mean(),
            "margins": (chosen_rewards - rejected_rewards).mean(),
            "accuracy": (chosen_rewards > rejected_rewards).float().mean(),
        }
    return loss, metrics


def nll_loss(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over the tokens where ``mask`` is true (a scalar tensor).

    Used as the optional "NLL on chosen" term next to DPO (RPO / Pang et al.), which keeps the
    chosen responses' likelihood from falling while their margin grows. Padding positions may
    hold anything (even ``-inf``): they are selected away, not multiplied by zero.
    """
    if token_logps.shape != mask.shape:
        raise ValueError(f"token_logps has shape {tuple(token_logps.shape)} but mask has shape {tuple(mask.shape)}")
    keep = mask.bool()
    count = keep.sum()
    if int(count) == 0:
        raise ValueError("nll_loss: the mask selects no tokens")
    return -torch.where(keep, token_logps, torch.zeros_like(token_logps)).sum() / count


# --------------------------------------------------------------------------- KTO


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    labels: torch.Tensor,
    kl_policy_logps: torch.Tensor,
    kl_ref_logps: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, Metrics]:
    """KTO (Ethayarajh et al., Eq. 7) on summed log-probs; mean over the whole batch, as TRL.

    ``z₀ = clamp(mean(kl_policy − kl_ref), min=0)``, detached, is the reference point: a batch
    estimate of KL(π‖ref) from *mismatched* prompt/completion pairs (so it does not reward the
    very completions being trained on). With ``r = policy − ref``:

    * desirable (``labels`` true): ``w_d · (1 − σ(β(r − z₀)))``
    * undesirable: ``w_u · (1 − σ(β(z₀ − r)))``

    ``1 − σ(x)`` is computed as ``σ(−x)``, the same number without cancellation.

    Metrics: ``kl`` (z₀), ``rewards/desirable`` and ``rewards/undesirable`` (mean β·r of each
    class, 0 when the class is absent from the batch), ``share_desirable``.
    """
    _check_same_shape(policy_logps=policy_logps, ref_logps=ref_logps, labels=labels)
    if kl_policy_logps.shape != kl_ref_logps.shape or kl_policy_logps.numel() == 0:
        raise ValueError(
            f"kl_policy_logps {tuple(kl_policy_logps.shape)} and kl_ref_logps {tuple(kl_ref_logps.shape)} "
            "must have the same, non-empty shape"
        )
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if desirable_weight < 0 or undesirable_weight < 0:
        raise ValueError(f"weights must be >= 0, got desirable={desirable_weight}, undesirable={undesirable_weight}")
    good = labels.bool()
    z0 = (kl_policy_logps - kl_ref_logps).mean().clamp(min=0).detach()
    ratio = policy_logps - ref_logps
    desirable = desirable_weight * torch.sigmoid(-beta * (ratio - z0))
    undesirable = undesirable_weight * torch.sigmoid(-beta * (z0 - ratio))
    loss = torch.where(good, desirable, undesirable).mean()
    with torch.no_grad():
        rewards = beta * ratio.detach()
        zero = rewards.new_zeros(())
        metrics = {
            "kl": z0,
            "rewards/desirable": rewards[good].mean() if bool(good.any()) else zero,
            "rewards/undesirable": rewards[~good].mean() if bool((~good).any()) else zero,
            "share_desirable": good.float().mean(),
        }
    return loss, metrics


def kto_weight_warning(
    n_desirable: int, n_undesirable: int, desirable_weight: float = 1.0, undesirable_weight: float = 1.0
) -> str | None:
    """A warning when class weights fall outside the KTO paper's recommended range, else ``None``.

    The paper (Eq. 8) recommends ``(w_d · n_d) / (w_u · n_u) ∈ [1, 4/3]``: desirable examples
    should carry slightly more total weight, because the loss is asymmetric (loss aversion).
    TRL 1.16 checks the same condition (bounds rounded to 2 decimals, 1.33 for 4/3) but only when
    ``n_d ≠ n_u``; we check it always, since equal counts with unequal weights are just as far off.
    """
    if n_desirable < 0 or n_undesirable < 0:
        raise ValueError(f"counts must be >= 0, got n_desirable={n_desirable}, n_undesirable={n_undesirable}")
    if not desirable_weight > 0 or not undesirable_weight > 0:
        raise ValueError(f"weights must be > 0, got desirable={desirable_weight}, undesirable={undesirable_weight}")
    if n_desirable + n_undesirable == 0:
        return None
    if n_desirable == 0 or n_undesirable == 0:
        present = "desirable" if n_desirable else "undesirable"
        return (
            f"KTO data has only {present} examples ({n_desirable + n_undesirable}); the loss then pushes in one "
            "direction only and the KL reference point does all the regularising"
        )
    ratio = (desirable_weight * n_desirable) / (undesirable_weight * n_undesirable)
    if KTO_RATIO_LOW - 1e-9 <= ratio <= KTO_RATIO_HIGH + 1e-9:
        return None
    d_low = n_undesirable * undesirable_weight / n_desirable
    u_high = n_desirable * desirable_weight / n_undesirable
    return (
        f"KTO weights look unbalanced: (desirable_weight * n_desirable) / (undesirable_weight * n_undesirable) = "
        f"({desirable_weight} * {n_desirable}) / ({undesirable_weight} * {n_undesirable}) = {ratio:.3g}, outside the "
        f"recommended [1, 4/3]. Set EITHER desirable_weight in [{d_low:.3g}, {d_low * KTO_RATIO_HIGH:.3g}] OR "
        f"undesirable_weight in [{u_high / KTO_RATIO_HIGH:.3g}, {u_high:.3g}]."
    )
