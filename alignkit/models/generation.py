"""Batched sampling of responses, for the sandbox, evaluation and AI feedback; and when to stop.

Prompts go through the same chat-template path as training (``encode_prompt``), are left-padded so
every row ends at the same column, and generation stops where the *model* says a turn ends
(:func:`stop_criteria`). Online RL has its own rollout code (``alignkit.train.rollout``) that also
returns token ids and log-probs; it takes its stop criteria from here too.

Stopping. A chat model's turn often ends with a token that is not the tokenizer's EOS: Gemma's
``<end_of_turn>``, Llama 3's ``<|eot_id|>``, Qwen's ``<|im_end|>``. The checkpoint lists them in
``generation_config.eos_token_id`` (one id or several) and may add ``stop_strings``; stopping at the
tokenizer's EOS alone lets the model run past the end of its turn into a made-up next turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from tqdm.auto import tqdm

from alignkit.data.batching import left_pad
from alignkit.data.chat import TemplateMode, encode_prompt


@dataclass(frozen=True)
class StopCriteria:
    """Where a response ends: any of ``token_ids``, or text containing any of ``strings``.

    ``strings`` holds only stop strings that are not a single token (single-token ones are in
    ``token_ids``, which is cheaper to test).
    """

    token_ids: tuple[int, ...]
    strings: tuple[str, ...] = ()

    def cut(self, text: str) -> str:
        """``text`` up to (not including) the first stop string."""
        ends = [i for i in (text.find(s) for s in self.strings) if i >= 0]
        return text[: min(ends)] if ends else text


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


def stop_criteria(model: torch.nn.Module | None, tokenizer: Any, extra_strings: Sequence[str] = ()) -> StopCriteria:
    """All EOS ids of ``model.generation_config`` and of the tokenizer, plus stop strings.

    Stop strings come from ``generation_config.stop_strings`` and ``extra_strings``; one that is a
    single token of the tokenizer becomes a stop id. Raises when nothing could ever stop a response.
    """
    inner = getattr(model, "module", model)
    config = getattr(inner, "generation_config", None)
    ids = [int(i) for i in _as_list(getattr(config, "eos_token_id", None)) + _as_list(tokenizer.eos_token_id)]
    strings: list[str] = []
    for text in [*_as_list(getattr(config, "stop_strings", None)), *extra_strings]:
        if not text:
            continue
        token = tokenizer.convert_tokens_to_ids(text) if text in tokenizer.get_vocab() else None
        if token is not None and token != tokenizer.unk_token_id:
            ids.append(int(token))
        elif text not in strings:
            strings.append(text)
    if not ids and not strings:
        raise ValueError("the model has no EOS token and no stop strings were given; responses could never stop")
    return StopCriteria(tuple(sorted(set(ids))), tuple(strings))


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str | list[dict[str, Any]]],
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    template: TemplateMode = "chat",
    progress: bool = False,
    stop_strings: Sequence[str] = (),
) -> list[str]:
    """Sample one response per prompt (greedy when ``temperature == 0``), stopping per :func:`stop_criteria`."""
    stop = stop_criteria(model, tokenizer, stop_strings)
    model.eval()
    device = next(model.parameters()).device
    outputs: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in tqdm(range(0, len(prompts), batch_size), disable=not progress, desc="generate"):
            chunk = [encode_prompt(tokenizer, p, template) for p in prompts[start : start + batch_size]]
            batch = {k: v.to(device) for k, v in left_pad(chunk, tokenizer.pad_token_id).items()}
            sampled = cast(Any, model).generate(  # transformers method, not in torch.nn.Module's type
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=top_p if temperature > 0 else None,
                top_k=0 if temperature > 0 else None,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=list(stop.token_ids),
                **({"stop_strings": list(stop.strings), "tokenizer": tokenizer} if stop.strings else {}),
            )
            new_tokens = sampled[:, batch["input_ids"].shape[1] :]
            outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return [stop.cut(o).strip() for o in outputs]
