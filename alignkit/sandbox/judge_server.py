"""A simulated LLM judge behind the OpenAI chat-completions protocol, for validating judged evaluation.

The judged path (:mod:`alignkit.evaluate.judged`) talks to any OpenAI-compatible endpoint and reads
the judge's verdict from the ``top_logprobs`` of its first token. On the sandbox we know the truth,
so this app plays a judge whose verdicts come from the ground truth (via
:class:`~alignkit.ai.simulated.SimulatedAILabeler`: calibrated soft labels of a set accuracy) plus
the biases real judges have (MT-Bench, AlpacaEval): a push towards the answer shown first and
towards the longer answer. Served on loopback, it lets a benchmark compare the judge's verdicts,
its LC win rates and its ladder with ground-truth battles through exactly the code a user runs
against a real endpoint.

Each presentation order gets its own draw (seeded by the content), so the judge can disagree
with itself when the order is swapped, as real judges do.

It is served by ``alignkit serve``'s own code: :func:`judge_lm` wraps the judge as a causal LM (a
``torch`` module and a byte-level tokenizer) that :func:`alignkit.ai.server.make_app`, the app
behind ``alignkit serve``, serves unchanged (chat template, continuous batching, ``top_logprobs``,
limits, OpenAI-shaped errors); its first-token distribution puts ``log p`` on "A" (or "Yes") and
``log(1 - p)`` on "B" (or "No"), and every later token is the end of text. (``alignkit serve`` on
the command line loads model folders, and this judge is not one, so it is served from code.)
"""

from __future__ import annotations

import hashlib
import math
import re
from types import SimpleNamespace
from typing import Any

import torch
from transformers import DynamicCache

from alignkit.ai.simulated import SimulatedAILabeler
from alignkit.models.tiny import train_tokenizer

_QUOTE = r"<<<{label}[^>\n]*>>>\n(.*?)\n<<<END {label}[^>\n]*>>>"


def _quoted(text: str, label: str) -> str | None:
    m = re.search(_QUOTE.format(label=label), text, re.S)
    return m.group(1) if m else None


class SimulatedJudge:
    """P(first shown is better) for a pairwise judge prompt; 0.5 for anything else."""

    def __init__(self, world: Any, accuracy: float = 0.8, position_bias: float = 0.05, length_bias: float = 0.1, seed: int = 0):
        self.world, self.accuracy, self.seed = world, accuracy, seed
        self.position_bias, self.length_bias = position_bias, length_bias
        self.requests = 0

    def p_first(self, text: str) -> float:
        self.requests += 1
        prompt, a, b = _quoted(text, "PROMPT"), _quoted(text, "RESPONSE A"), _quoted(text, "RESPONSE B")
        if prompt is None or a is None or b is None:
            return 0.5
        digest = hashlib.sha256(f"{self.seed}\0{prompt}\0{a}\0{b}".encode()).hexdigest()
        labeler = SimulatedAILabeler(self.world, self.accuracy, seed=int(digest[:12], 16))
        p = labeler.label([(prompt, a, b)])[0].p_a
        p += self.position_bias + self.length_bias * (len(a) > len(b)) - self.length_bias * (len(b) > len(a))
        return min(max(p, 0.01), 0.99)


YES_NO = "Answer with a single word: Yes or No"


class JudgeLM(torch.nn.Module):
    """The simulated judge as a causal LM for :func:`alignkit.ai.server.make_app`.

    The server's running batch keeps a key/value cache per layer and pads, joins and drops its rows
    (:mod:`alignkit.ai.serving.batch`); this model's one-layer "cache" holds the token ids
    themselves, so every forward can read each row's whole text (``attention_mask`` marks the real
    positions) and ask the judge. Prefill (no cache yet) gives the verdict; later steps give EOS.
    """

    def __init__(self, judge: SimulatedJudge, tokenizer: Any) -> None:
        super().__init__()
        self.judge, self.tokenizer = judge, tokenizer
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)  # the server reads the device from it
        self.vocab = len(tokenizer)
        self.option_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("A", "B", "Yes", "No")}
        self.eos = int(tokenizer.eos_token_id)
        self.generation_config = SimpleNamespace(eos_token_id=self.eos, stop_strings=None)
        self.config = SimpleNamespace(max_position_embeddings=1 << 20)

    def _verdict(self, ids: list[int]) -> torch.Tensor:
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        p = self.judge.p_first(text)
        first, second = ("Yes", "No") if YES_NO in text else ("A", "B")
        row = torch.full((self.vocab,), -1e9)
        row[self.option_ids[first]], row[self.option_ids[second]] = math.log(p), math.log(1 - p)
        return row

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = True,
    ) -> Any:
        ids = input_ids.to(torch.float64)[:, None, :, None]  # (B, heads=1, L, head_dim=1)
        logits = torch.full((input_ids.shape[0], input_ids.shape[1], self.vocab), -1e9)
        if past_key_values is None:
            cache = DynamicCache()
            cache.update(ids, ids, 0)
            for b in range(input_ids.shape[0]):
                real = input_ids[b][attention_mask[b].bool()].tolist()
                logits[b, -1] = self._verdict(real)
        else:
            cache = past_key_values
            cache.update(ids, ids, 0)
            logits[:, -1, self.eos] = 0.0
        return SimpleNamespace(logits=logits, past_key_values=cache)


def judge_lm(judge: SimulatedJudge) -> tuple[JudgeLM, Any]:
    """The judge and a byte-level tokenizer (the chat template of alignkit's tiny models) with
    "A", "B", "Yes" and "No" as single tokens, for ``make_app(model, tokenizer)``."""
    tokenizer = train_tokenizer(["Yes", "No", "A", "B"] * 50, vocab_size=300)
    for t in ("A", "B", "Yes", "No"):
        if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id):
            raise RuntimeError(f"the judge tokenizer has no single token {t!r}")
    return JudgeLM(judge, tokenizer), tokenizer
