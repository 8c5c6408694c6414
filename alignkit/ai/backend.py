"""The one small interface every AI-feedback component talks to, and the local-model backend.

Critics, revisers, labelers and judges only ever need two things from a language model: batched
chat completions, and the log-probabilities of a few answer options (``"A"``/``"B"``, ``"1"``..``"5"``)
as the next tokens after a prompt. Keeping the interface this small lets the same code run on a
local Hugging Face model (tests, the sandbox) and on any OpenAI-compatible endpoint (vLLM, TGI,
hosted APIs) without branches.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, Sequence, runtime_checkable

import torch

Message = dict[str, Any]


@runtime_checkable
class ChatBackend(Protocol):
    """What alignkit.ai needs from a model.

    ``chat`` answers every conversation of ``messages_list`` (one completion each, same ``seed`` for
    all of them: vary the seed across calls to draw distinct samples of the same conversation).
    ``option_logprobs`` returns log p(option | messages) for each option, scored as the first
    tokens of the assistant's reply.
    """

    def chat(self, messages_list: Sequence[list[Message]], max_tokens: int = 256, temperature: float = 0.0,
             seed: int = 0) -> list[str]: ...

    def option_logprobs(self, messages: list[Message], options: Sequence[str]) -> list[float]: ...


def softmax_options(logprobs: Sequence[float]) -> list[float]:
    """Normalise option log-probs into a distribution over the options only (the CAI soft label).

    Mass the model puts on other tokens is discarded: we ask "given that it answers A or B, how
    likely A", which is what a preference label needs. All ``-inf`` gives a uniform distribution.
    """
    finite = [x for x in logprobs if x != -math.inf]
    if not finite:
        return [1.0 / len(logprobs)] * len(logprobs)
    top = max(finite)
    weights = [math.exp(x - top) if x != -math.inf else 0.0 for x in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


class LocalBackend:
    """A Hugging Face causal LM held in this process (``alignkit.models.load_model`` gives one).

    Chat goes through :func:`alignkit.models.generate` (batched, chat template, left padding).
    Option log-probs match what :class:`~alignkit.ai.openai_backend.OpenAIBackend` reads from an
    endpoint's ``top_logprobs``, so both backends give the same labels for the same model: an option
    that is one token is scored as the log-sum-exp of the next-token log-probs of every token whose
    stripped text equals it (``"A"``, ``" A"``, ``"A\n"`` all answer A); a longer option is scored as
    the sum of its token log-probs after the prompt (:func:`alignkit.models.sequence_logprobs`).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, batch_size: int = 16, progress: bool = False) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.progress = batch_size, progress
        self._surface: dict[str, list[int]] | None = None

    def chat(self, messages_list: Sequence[list[Message]], max_tokens: int = 256, temperature: float = 0.0,
             seed: int = 0) -> list[str]:
        from alignkit.models import generate

        if not messages_list:
            return []
        return generate(self.model, self.tokenizer, [list(m) for m in messages_list], max_new_tokens=max_tokens,
                        temperature=temperature, batch_size=self.batch_size, seed=seed, progress=self.progress)

    def _token_ids_for(self, option: str) -> list[int]:
        """Every vocabulary id whose decoded text, stripped, is ``option`` (built once, then cached)."""
        if self._surface is None:
            surface: dict[str, list[int]] = {}
            for token_id in range(len(self.tokenizer)):
                surface.setdefault(self.tokenizer.decode([token_id]).strip(), []).append(token_id)
            self._surface = surface
        return self._surface.get(option.strip(), []) if option.strip() else []

    @torch.no_grad()
    def option_logprobs(self, messages: list[Message], options: Sequence[str]) -> list[float]:
        from alignkit.data.batching import collate
        from alignkit.data.chat import Encoded, encode_prompt
        from alignkit.models import sequence_logprobs

        if not options:
            raise ValueError("option_logprobs needs at least one option")
        self.model.eval()
        device = next(self.model.parameters()).device
        prompt_ids = encode_prompt(self.tokenizer, list(messages))
        logits = self.model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=False).logits
        next_logps = torch.log_softmax(logits[0, -1].float(), -1).cpu()
        result: list[float] = []
        for option in options:
            ids = self._token_ids_for(option)
            if ids:
                result.append(float(next_logps[ids].logsumexp(0)))
                continue
            option_ids = self.tokenizer(option, add_special_tokens=False)["input_ids"]
            if not option_ids:
                raise ValueError(f"option {option!r} tokenizes to nothing")
            row = [Encoded(prompt_ids + option_ids, [False] * len(prompt_ids) + [True] * len(option_ids))]
            batch = {k: v.to(device) for k, v in collate([row], self.tokenizer.pad_token_id).items()}
            result.append(float(sequence_logprobs(self.model, batch).sequence_logps[0]))
        return result
