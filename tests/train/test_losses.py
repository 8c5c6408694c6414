"""Preference losses against hand-worked values and against TRL 1.16 on the same tensors.

Hand values use  -log σ(x) = log(1 + e^-x):
  -log σ(1) = 0.31326169   -log σ(-1) = 1.31326169
  -log σ(2) = 0.12692801   -log σ(-2) = 2.12692801   -log σ(0.5) = 0.47407698
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import MethodType, SimpleNamespace

import pytest
import torch

from alignkit.train.losses import dpo_loss, kto_loss, kto_weight_warning, nll_loss, reward_model_loss

t = torch.tensor


# --------------------------------------------------------------------------- reward model


def test_reward_model_loss_by_hand():
    # diff = [2-1, 0-1] = [1, -1]; loss = (0.31326169 + 1.31326169) / 2 = 0.81326169
    loss, m = reward_model_loss(t([2.0, 0.0]), t([1.0, 1.0]))
    assert float(loss) == pytest.approx(0.81326169, abs=1e-6)
    assert float(m["accuracy"]) == 0.5 and float(m["margin"]) == pytest.approx(0.0)
    # margin [0.5, 0]: logits [0.5, -1] -> (0.47407698 + 1.31326169) / 2 = 0.89366934
    loss, _ = reward_model_loss(t([2.0, 0.0]), t([1.0, 1.0]), margin=t([0.5, 0.0]))
    assert float(loss) == pytest.approx(0.89366934, abs=1e-6)
    # centering: (r+ + r-) = [3, 1], mean of squares = 5, * 0.1 = 0.5 -> 0.81326169 + 0.5
    loss, _ = reward_model_loss(t([2.0, 0.0]), t([1.0, 1.0]), center_coef=0.1)
    assert float(loss) == pytest.approx(1.31326169, abs=1e-6)


def test_reward_model_loss_gradient_and_stability():
    chosen = t([2.0, 0.0], requires_grad=True)
    loss, m = reward_model_loss(chosen, t([1.0, 1.0]))
    loss.backward()
    # d/dr+ of -log σ(d) / B = -σ(-d) / 2: σ(-1) = 0.26894142, σ(1) = 0.73105858
    torch.testing.assert_close(chosen.grad, t([-0.26894142 / 2, -0.73105858 / 2]))
    assert not m["accuracy"].requires_grad
    # a confidently wrong pair gives a large finite loss, not inf (logsigmoid, not log(sigmoid))
    loss, _ = reward_model_loss(t([-500.0]), t([500.0]))
    assert float(loss) == pytest.approx(1000.0)


def test_reward_model_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="margin"):
        reward_model_loss(t([1.0, 2.0]), t([0.0, 0.0]), margin=t([1.0]))
    with pytest.raises(ValueError, match="empty"):
        reward_model_loss(t([]), t([]))


# --------------------------------------------------------------------------- DPO

# β = 0.5. pair 1: π_c=-1, π_r=-3, ref_c=-2, ref_r=-2 -> chosen ratio 1, rejected ratio -1, h = 2, βh = 1
#          pair 2: π_c=-5, π_r=-1, ref_c=-3, ref_r=-3 -> chosen ratio -2, rejected ratio 2, h = -4, βh = -2
PC, PR, RC, RR = t([-1.0, -5.0]), t([-3.0, -1.0]), t([-2.0, -3.0]), t([-2.0, -3.0])
CL, RL = t([2.0, 4.0]), t([1.0, 2.0])  # completion lengths for IPO
BETA = 0.5


@pytest.mark.parametrize(
    "loss_type,eps,expected",
    [
        # (0.31326169 + 2.12692801) / 2
        ("sigmoid", 0.0, 1.22009485),
        # cDPO ε=0.1: pair 1 0.9*0.31326169 + 0.1*1.31326169 = 0.41326169,
        #             pair 2 0.9*2.12692801 + 0.1*0.12692801 = 1.92692801; mean 1.17009485
        ("sigmoid", 0.1, 1.17009485),
        # robust ε=0.1: pair 1 (0.9*0.31326169 - 0.1*1.31326169)/0.8 = 0.18826169,
        #               pair 2 (0.9*2.12692801 - 0.1*0.12692801)/0.8 = 2.37692801; mean 1.28259485
        ("robust", 0.1, 1.28259485),
        # hinge: relu(1 - 1) = 0, relu(1 + 2) = 3; mean 1.5
        ("hinge", 0.0, 1.5),
        # IPO: h̄ = 1/2 - (-1)/1 = 1.5 and -2/4 - 2/2 = -1.5; 1/(2β) = 1; (0.5² + 2.5²)/2 = 3.25
        ("ipo", 0.0, 3.25),
    ],
)
def test_dpo_loss_by_hand(loss_type, eps, expected):
    loss, m = dpo_loss(
        PC, PR, RC, RR, beta=BETA, loss_type=loss_type, label_smoothing=eps, chosen_lengths=CL, rejected_lengths=RL
    )
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    # rewards: chosen β*[1, -2] = [0.5, -1] (mean -0.25), rejected β*[-1, 2] = [-0.5, 1] (mean 0.25)
    assert float(m["rewards/chosen"]) == pytest.approx(-0.25)
    assert float(m["rewards/rejected"]) == pytest.approx(0.25)
    assert float(m["margins"]) == pytest.approx(-0.5)
    assert float(m["accuracy"]) == pytest.approx(0.5)


def test_dpo_sigmoid_gradient_by_hand():
    pc = PC.clone().requires_grad_(True)
    loss, _ = dpo_loss(pc, PR, RC, RR, beta=BETA)
    loss.backward()
    # d/dπ_c of -log σ(βh) / B = -β σ(-βh) / 2: pair 1 -0.5*σ(-1)/2 = -0.5*0.26894142/2 = -0.06723536,
    # pair 2 -0.5*σ(2)/2 = -0.5*0.88079708/2 = -0.22019927
    torch.testing.assert_close(pc.grad, t([-0.06723536, -0.22019927]))


def test_dpo_loss_is_stable_and_validates():
    loss, _ = dpo_loss(t([-2000.0]), t([0.0]), t([0.0]), t([0.0]), beta=0.5)
    assert float(loss) == pytest.approx(1000.0)  # -log σ(-1000) = 1000, finite
    with pytest.raises(ValueError, match="lengths"):
        dpo_loss(PC, PR, RC, RR, beta=BETA, loss_type="ipo")
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(PC, PR, RC, RR, beta=BETA, loss_type="sigmod")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(PC, PR, RC, RR, beta=BETA, loss_type="robust", label_smoothing=0.5)
    with pytest.raises(ValueError, match="ref_rejected_logps"):
        dpo_loss(PC, PR, RC, t([1.0]), beta=BETA)


# --------------------------------------------------------------------------- NLL


def test_nll_loss_by_hand_ignores_padding_even_if_infinite():
    logps = t([[-1.0, -2.0, -math.inf], [-3.0, math.nan, 0.0]])
    mask = t([[True, True, False], [True, False, False]])
    # -(-1 - 2 - 3) / 3 tokens = 2
    assert float(nll_loss(logps, mask)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no tokens"):
        nll_loss(logps, torch.zeros_like(mask))


# --------------------------------------------------------------------------- KTO

# β = 0.5; r = policy - ref = [-1,-2,-3,-4] - [-2,-2,-2,-2] = [1, 0, -1, -2]; labels [T, T, F, F]
# KL pairs: [-1, -2] - [-2, -2] = [1, 0], mean 0.5 -> z0 = 0.5
KP, KR, KLAB = t([-1.0, -2.0, -3.0, -4.0]), t([-2.0, -2.0, -2.0, -2.0]), t([True, True, False, False])
KLP, KLR = t([-1.0, -2.0]), t([-2.0, -2.0])


def test_kto_loss_by_hand():
    loss, m = kto_loss(KP, KR, KLAB, KLP, KLR, beta=0.5, desirable_weight=1.0, undesirable_weight=1.5)
    # desirable: 1 - σ(0.5*(1 - 0.5)) = σ(-0.25) = 0.43782350; 1 - σ(0.5*(0 - 0.5)) = σ(0.25) = 0.56217650
    # undesirable: 1.5 * (1 - σ(0.5*(0.5 + 1))) = 1.5 * σ(-0.75) = 0.48123195
    #              1.5 * (1 - σ(0.5*(0.5 + 2))) = 1.5 * σ(-1.25) = 0.33405021
    # mean = 1.81528216 / 4 = 0.45382054
    assert float(loss) == pytest.approx(0.45382054, abs=1e-6)
    assert float(m["kl"]) == pytest.approx(0.5)
    assert float(m["rewards/desirable"]) == pytest.approx(0.5 * (1 + 0) / 2)
    assert float(m["rewards/undesirable"]) == pytest.approx(0.5 * (-1 - 2) / 2)


def test_kto_reference_point_is_clamped_and_detached():
    klp = t([-3.0, -3.0], requires_grad=True)  # mean(kl_policy - kl_ref) = -1 -> z0 = clamp(-1, 0) = 0
    policy = KP.clone().requires_grad_(True)
    loss, m = kto_loss(policy, KR, KLAB, klp, KLR, beta=0.5)
    assert float(m["kl"]) == 0.0
    # with z0 = 0: σ(-0.5), σ(0), σ(-0.5), σ(-1) -> (0.37754067 + 0.5 + 0.37754067 + 0.26894142) / 4 = 0.38100569
    assert float(loss.detach()) == pytest.approx(0.38100569, abs=1e-6)
    loss.backward()
    assert klp.grad is None  # z0 carries no gradient into the KL pass
    assert policy.grad is not None and bool((policy.grad != 0).all())


def test_kto_single_class_batch():
    loss, m = kto_loss(KP[:2], KR[:2], KLAB[:2], KLP, KLR, beta=0.5)
    assert float(loss) == pytest.approx((0.43782350 + 0.56217650) / 2, abs=1e-6)
    assert float(m["rewards/undesirable"]) == 0.0


def _trl_kto_warns(nd, nu, wd, wu):
    """TRL 1.16 kto_trainer._prepare_dataset's condition, restated (it is inline, not callable)."""
    nd, nu = max(nd, 1), max(nu, 1)
    if nd == nu:
        return False
    d_lo, d_hi = round(nu * wu / nd, 2), round(nu * wu / nd * 1.33, 2)
    u_lo, u_hi = round(nd * wd / nu / 1.33, 2), round(nd * wd / nu, 2)
    return not (d_lo <= wd <= d_hi or u_lo <= wu <= u_hi)


def test_kto_weight_warning_by_hand():
    assert kto_weight_warning(100, 100, 1.0, 1.0) is None  # ratio 1
    assert kto_weight_warning(100, 80, 1.0, 1.0) is None  # ratio 1.25
    warning = kto_weight_warning(100, 50, 1.0, 1.0)  # ratio 2: desirable_weight in [0.5, 0.667]
    assert warning is not None and "[0.5, 0.667]" in warning and "[1.5, 2]" in warning
    assert kto_weight_warning(50, 100, 1.0, 1.0) is not None  # ratio 0.5
    assert kto_weight_warning(100, 100, 1.0, 1.5) is not None  # ratio 0.667 (TRL stays silent on equal counts)
    assert "only desirable" in kto_weight_warning(10, 0)  # type: ignore[operator]
    assert kto_weight_warning(0, 0) is None


def test_kto_weight_warning_matches_trl_condition_when_counts_differ():
    cases = 0
    for nd in (10, 37, 60, 100, 250):
        for nu in (10, 25, 80, 100, 300):
            if nd == nu:
                continue
            for wd in (0.5, 1.0, 1.2, 2.0):
                for wu in (0.4, 1.0, 1.33, 3.0):
                    ratio = wd * nd / (wu * nu)
                    if min(abs(ratio - 1), abs(ratio - 4 / 3), abs(ratio - 1.33)) < 0.02:
                        continue  # TRL rounds its bounds to 2 decimals; skip the knife edges
                    assert (kto_weight_warning(nd, nu, wd, wu) is not None) == _trl_kto_warns(nd, nu, wd, wu), (nd, nu, wd, wu)
                    cases += 1
    assert cases > 200


# --------------------------------------------------------------------------- against TRL 1.16 itself
#
# TRL computes these losses inside its trainers' ``_compute_loss``/``compute_loss`` methods, which
# need a model forward. We call those methods unbound on a stub ``self`` and a stub model whose
# per-token log-probs we choose: row i's first token carries the sequence's summed log-prob, the
# rest are 0, so TRL's token sums reproduce our per-sequence inputs exactly.


class _Acc:
    device = torch.device("cpu")

    @staticmethod
    def gather_for_metrics(x):
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(x)

    gather = gather_for_metrics


def _stub(**attrs):
    base = dict(
        accelerator=_Acc(),
        model=SimpleNamespace(training=True),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
        aux_loss_enabled=False,
    )
    base.update(attrs)
    return SimpleNamespace(**base)


class _LogpModel:
    """Stands in for a causal LM: sequence id k in column 0 of input_ids -> that sequence's log-prob."""

    def __init__(self, table):
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def __call__(self, input_ids, **_):
        n, width = input_ids.shape
        log_probs = torch.zeros(n, width - 1)
        log_probs[:, 0] = self.table[input_ids[:, 0]]
        zeros = torch.zeros(n, width - 1)
        return SimpleNamespace(
            log_probs=log_probs,
            entropy=zeros,
            mean_logits=zeros,
            is_top1=zeros.bool(),
            logits=self.table[input_ids[:, 0]].unsqueeze(-1),
        )


def _mask(lengths, width):
    return (torch.arange(width)[None, :] < torch.as_tensor(lengths)[:, None]).long()


@pytest.mark.parametrize("loss_type,eps", [("sigmoid", 0.0), ("robust", 0.1), ("robust", 0.3), ("hinge", 0.0), ("ipo", 0.0)])
def test_dpo_loss_matches_trl(loss_type, eps):
    pytest.importorskip("trl")
    from trl.trainer.dpo_trainer import DPOTrainer

    g = torch.Generator().manual_seed(0)
    b, width = 6, 8
    pc, pr = -torch.rand(b, generator=g) * 20, -torch.rand(b, generator=g) * 20
    rc, rr = -torch.rand(b, generator=g) * 20, -torch.rand(b, generator=g) * 20
    cl, rl = torch.randint(1, width, (b,), generator=g), torch.randint(1, width, (b,), generator=g)
    beta = 0.3
    stub = _stub(
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=eps,
        use_weighting=False,
    )
    input_ids = torch.zeros(2 * b, width, dtype=torch.long)
    input_ids[:, 0] = torch.arange(2 * b)
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones(2 * b, width, dtype=torch.long),
        "completion_mask": _mask(torch.cat([cl, rl]), width),
        "ref_chosen_logps": rc,
        "ref_rejected_logps": rr,
    }
    theirs = DPOTrainer._compute_loss(stub, _LogpModel(torch.cat([pc, pr])), inputs, return_outputs=False)
    ours, m = dpo_loss(
        pc, pr, rc, rr, beta=beta, loss_type=loss_type, label_smoothing=eps, chosen_lengths=cl, rejected_lengths=rl
    )
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5, abs=1e-6)
    assert float(m["rewards/chosen"]) == pytest.approx(stub._metrics["train"]["rewards/chosen"][-1], rel=1e-5, abs=1e-6)
    assert float(m["margins"]) == pytest.approx(stub._metrics["train"]["rewards/margins"][-1], rel=1e-5, abs=1e-6)
    assert float(m["accuracy"]) == pytest.approx(stub._metrics["train"]["rewards/accuracies"][-1])


def test_dpo_label_smoothed_sigmoid_equals_trl_aot_form_on_sorted_inputs():
    """TRL 1.16's ``sigmoid`` ignores label smoothing; its ``aot`` loss applies the same cDPO formula
    to sorted log-ratios. With policy == reference on the rejected side and ref_chosen = 0, sorting is
    a no-op when chosen logps are already ascending, so aot(ε) must equal our sigmoid(ε)."""
    pytest.importorskip("trl")
    from trl.trainer.dpo_trainer import DPOTrainer

    b, width = 4, 4
    pc = t([-9.0, -6.0, -2.0, -0.5])  # ascending -> sorting leaves pairs intact
    pr, rc, rr = torch.zeros(b), torch.zeros(b), torch.zeros(b)
    stub = _stub(
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=["aot"],
        loss_weights=[1.0],
        beta=0.2,
        label_smoothing=0.2,
        use_weighting=False,
    )
    input_ids = torch.zeros(2 * b, width, dtype=torch.long)
    input_ids[:, 0] = torch.arange(2 * b)
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones(2 * b, width, dtype=torch.long),
        "completion_mask": torch.ones(2 * b, width, dtype=torch.long),
        "ref_chosen_logps": rc,
        "ref_rejected_logps": rr,
    }
    theirs = DPOTrainer._compute_loss(stub, _LogpModel(torch.cat([pc, pr])), inputs, return_outputs=False)
    ours, _ = dpo_loss(pc, pr, rc, rr, beta=0.2, loss_type="sigmoid", label_smoothing=0.2)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 1.5), (2.0, 0.5)])
def test_kto_loss_matches_trl(weights):
    pytest.importorskip("trl")
    from trl.trainer.kto_trainer import KTOTrainer

    g = torch.Generator().manual_seed(1)
    b, width = 7, 5
    policy, ref = -torch.rand(b, generator=g) * 10, -torch.rand(b, generator=g) * 10
    kl_ref = -torch.rand(b, generator=g) * 10
    kl_policy = kl_ref + torch.randn(b, generator=g) + 1.0  # mean gap > 0, so z0 is not clamped away
    labels = t([True, False, True, True, False, False, True])
    wd, wu = weights
    stub = _stub(
        loss_type="kto", beta=0.4, desirable_weight=wd, undesirable_weight=wu, calculate_KL=True, precompute_ref_logps=True
    )
    stub._compute_kl_logps = MethodType(KTOTrainer._compute_kl_logps, stub)
    ids = torch.zeros(b, width, dtype=torch.long)
    ids[:, 0] = torch.arange(b)
    kl_ids = ids.clone()
    kl_ids[:, 0] += b
    ones = torch.ones(b, width, dtype=torch.long)
    inputs = {
        "input_ids": ids,
        "attention_mask": ones,
        "completion_mask": ones,
        "KL_input_ids": kl_ids,
        "KL_attention_mask": ones,
        "KL_completion_mask": ones,
        "label": labels,
        "ref_logps": ref,
        "ref_KL_logps": kl_ref,
    }
    theirs = KTOTrainer._compute_loss(stub, _LogpModel(torch.cat([policy, kl_policy])), inputs, return_outputs=False)
    ours, m = kto_loss(policy, ref, labels, kl_policy, kl_ref, beta=0.4, desirable_weight=wd, undesirable_weight=wu)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5, abs=1e-6)
    assert float(m["kl"]) > 0.1
    assert float(m["kl"]) == pytest.approx(stub._metrics["train"]["kl"][-1], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("margin,center", [(False, None), (True, None), (True, 0.01)])
def test_reward_model_loss_matches_trl(margin, center):
    pytest.importorskip("trl")
    from trl.trainer.reward_trainer import RewardTrainer

    g = torch.Generator().manual_seed(2)
    b = 5
    chosen, rejected = torch.randn(b, generator=g) * 2, torch.randn(b, generator=g) * 2
    margins = torch.rand(b, generator=g) if margin else None
    stub = _stub(args=SimpleNamespace(center_rewards_coefficient=center))
    ids = torch.zeros(2 * b, 3, dtype=torch.long)
    ids[:, 0] = torch.arange(2 * b)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if margins is not None:
        inputs["margin"] = margins
    theirs = RewardTrainer.compute_loss(stub, _LogpModel(torch.cat([chosen, rejected])), inputs)
    ours, m = reward_model_loss(chosen, rejected, margin=margins, center_coef=center or 0.0)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
    assert float(m["accuracy"]) == pytest.approx(stub._metrics["train"]["accuracy"][-1])
    assert float(m["margin"]) == pytest.approx(stub._metrics["train"]["margin"][-1], rel=1e-5, abs=1e-6)
