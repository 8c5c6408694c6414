"""Log-probs keep the model's precision: float64 stays float64, only half precision is upcast."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.models.logprobs import logprobs_from_logits


def _batch() -> dict[str, torch.Tensor]:
    # One row, two sequences: positions 1-2 belong to sequence 0, position 3 to sequence 1.
    return {
        "input_ids": torch.tensor([[0, 1, 2, 1]]),
        "loss_mask": torch.tensor([[False, True, True, True]]),
        "sequence_ids": torch.tensor([[0, 0, 0, 1]]),
        "num_sequences": torch.tensor(2),
    }


def test_float64_logits_give_float64_logps_to_float64_rounding():
    # 1e-9 apart: float32 cannot tell these logits apart, float64 can.
    logits = torch.tensor([[[0.0, 1e-9, 0.0], [0.0, 0.0, 1e-9], [1e-9, 0.0, 0.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    out = logprobs_from_logits(logits, _batch())
    assert out.sequence_logps.dtype == torch.float64
    # Target at position t+1 read from logits at t: 1 (has 1e-9), 2 (has 1e-9), 1 (does not).
    favoured = 1e-9 - math.log(2 + math.exp(1e-9))
    other = 0.0 - math.log(2 + math.exp(1e-9))
    assert out.sequence_logps[0].item() == pytest.approx(2 * favoured, rel=1e-15)
    assert out.sequence_logps[1].item() == pytest.approx(other, rel=1e-15)
    assert out.sequence_logps[0].item() != out.sequence_logps[1].item() * 2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_are_upcast_to_float32(dtype):
    logits = torch.randn(1, 4, 3).to(dtype)
    out = logprobs_from_logits(logits, _batch())
    assert out.sequence_logps.dtype == torch.float32
    expected = torch.log_softmax(logits.float(), -1)[0, [0, 1, 2], [1, 2, 1]]
    torch.testing.assert_close(out.sequence_logps, torch.stack([expected[:2].sum(), expected[2]]))
