"""The one small interface every AI-feedback component talks to, and the local-model backend.

Critics, revisers, labelers and judges only ever need two things from a language model: batched
chat completions, and the log-probabilities of a few answer options (``"A"``/``"B"``, ``"1"``..``"5"``)
as the next tokens after a prompt. Keeping the interface this small lets the same code run on a
local Hugging Face model (tests, the sandbox) and on any OpenAI-compatible endpoint (vLLM, TGI,
hosted APIs) without branches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from tqdm.auto import tqdm

from alignkit.data.batching import collate, left_pad
from alignkit.data.chat import Encoded, encode_prompt
from alignkit.models.generation import generate
from alignkit.models.logprobs import sequence_logprobs

Message = dict[str, Any]


@runtime_checkable
class ChatBackend(Protocol):
    """What alignkit.ai needs from a model.

    ``chat`` answers every conversation of ``messages_list`` (one completion each, same ``seed`` for
    all of them: vary the seed across calls to draw distinct samples of the same conversation).
    ``option_logprobs`` returns log p(option | messages) for each option, scored as the first
    tokens of the assistant's reply.
    """

    def chat(
        self, messages_list: Sequence[list[Message]], max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> list[str]: ...

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

    def chat(
        self, messages_list: Sequence[list[Message]], max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> list[str]:
        if not messages_list:
            return []
        return generate(
            self.model,
            self.tokenizer,
            [list(m) for m in messages_list],
            max_new_tokens=max_tokens,
            temperature=temperature,
            batch_size=self.batch_size,
            seed=seed,
            progress=self.progress,
        )

    def _token_ids_for(self, option: str) -> list[int]:
        """Every vocabulary id whose decoded text, stripped, is ``option`` (built once, then cached)."""
        if self._surface is None:
            surface: dict[str, list[int]] = {}
            for token_id in range(len(self.tokenizer)):
                surface.setdefault(self.tokenizer.decode([token_id]).strip(), []).append(token_id)
            self._surface = surface
        return self._surface.get(option.strip(), []) if option.strip() else []

    def option_logprobs(self, messages: list[Message], options: Sequence[str]) -> list[float]:
        return self.option_logprobs_many([messages], options)[0]

    @torch.no_grad()
    def option_logprobs_many(self, messages_list: Sequence[list[Message]], options: Sequence[str]) -> list[list[float]]:
        """``option_logprobs`` for many prompts: single-token options take one left-padded forward
        per batch of prompts; multi-token options are scored per prompt as sequences."""
        if not options:
            raise ValueError("option_logprobs needs at least one option")
        self.model.eval()
        device = next(self.model.parameters()).device
        surface = [self._token_ids_for(o) for o in options]
        results: list[list[float]] = []
        for start in tqdm(range(0, len(messages_list), self.batch_size), disable=not self.progress, desc="option log-probs"):
            prompts = [encode_prompt(self.tokenizer, list(m)) for m in messages_list[start : start + self.batch_size]]
            batch = {k: v.to(device) for k, v in left_pad(prompts, self.tokenizer.pad_token_id).items()}
            # Positions count real tokens only, so a padded row sees exactly what it would alone.
            positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            logits = self.model(**batch, position_ids=positions, use_cache=False).logits[:, -1]
            next_logps = torch.log_softmax(logits.float(), -1).cpu()
            for prompt_ids, row in zip(prompts, next_logps):
                results.append(
                    [
                        float(row[ids].logsumexp(0)) if ids else self._sequence_logprob(prompt_ids, option)
                        for ids, option in zip(surface, options)
                    ]
                )
        return results

    def _sequence_logprob(self, prompt_ids: list[int], option: str) -> float:
        option_ids = self.tokenizer(option, add_special_tokens=False)["input_ids"]
        if not option_ids:
            raise ValueError(f"option {option!r} tokenizes to nothing")
        device = next(self.model.parameters()).device
        row = [Encoded(prompt_ids + option_ids, [False] * len(prompt_ids) + [True] * len(option_ids))]
        batch = {k: v.to(device) for k, v in collate([row], self.tokenizer.pad_token_id).items()}
        return float(sequence_logprobs(self.model, batch).sequence_logps[0])
