"""KL between a policy and a reference, estimated on the policy's own samples.

KL(π || π_ref) = E_{y ~ π}[log π(y|x) − log π_ref(y|x)]; with samples already drawn from π the
Monte-Carlo mean of the log-ratio is an unbiased estimate (the quantity the InstructGPT/PPO KL
penalty controls, Ouyang et al. 2022), so it puts models on a common reward-vs-KL axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from alignkit.data.batching import collate
from alignkit.data.chat import TooLongError, encode_example
from alignkit.models.logprobs import sequence_logprobs


def sampled_kl(
    policy: torch.nn.Module,
    reference: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    responses: Sequence[str],
    batch_size: int = 32,
) -> float:
    """Monte-Carlo KL(policy || reference): mean over the policy's own samples of log π − log π_ref."""
    encoded = []
    for p, r in zip(prompts, responses):
        try:
            encoded.append(encode_example(tokenizer, p, r or tokenizer.eos_token, 512))
        except TooLongError:
            continue
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            batch = collate([[e] for e in encoded[start : start + batch_size]], tokenizer.pad_token_id)
            total += float(
                (sequence_logprobs(policy, batch).sequence_logps - sequence_logprobs(reference, batch).sequence_logps).sum()
            )
    return total / max(len(encoded), 1)
