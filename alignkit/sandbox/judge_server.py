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
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from fastapi import FastAPI

from alignkit.ai.simulated import SimulatedAILabeler

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


def make_judge_app(judge: SimulatedJudge, model_name: str = "sandbox-judge") -> FastAPI:
    """``POST /v1/chat/completions`` answering "A" or "B" with both options in ``top_logprobs``."""
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "alignkit-sandbox"}]}

    @app.post("/v1/chat/completions")
    def chat(body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or [{}]
        content = messages[-1].get("content", "")
        text = content if isinstance(content, str) else " ".join(str(c.get("text", "")) for c in content)
        p = judge.p_first(text)
        yes_no = "Answer with a single word: Yes or No" in text
        first, second = ("Yes", "No") if yes_no else ("A", "B")
        lp_first, lp_second = math.log(p), math.log(1 - p)
        top = [{"token": first, "logprob": lp_first, "bytes": None}, {"token": second, "logprob": lp_second, "bytes": None}]
        token = first if p >= 0.5 else second
        return {
            "id": "sim",
            "object": "chat.completion",
            "created": 0,
            "model": model_name,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length",
                    "message": {"role": "assistant", "content": token},
                    "logprobs": {
                        "content": [{"token": token, "logprob": max(lp_first, lp_second), "bytes": None, "top_logprobs": top}]
                    },
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1},
        }

    return app
