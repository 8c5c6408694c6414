"""Rollout engines: what samples an RL step's responses — alignkit's own sampler or vLLM.

Sampling is most of an RL step's time (OpenRLHF reports ~80 %), and on a GPU a serving engine with
paged attention and continuous batching (vLLM) samples many times faster than a training model's
forward loop. So the RL loop asks a :class:`RolloutEngine` for completions (token ids, whether each
stopped) and turns them into the :class:`~alignkit.train.rollout.Rollout` grid every RL formula
works on (:func:`rollout_from_completions`). Nothing downstream trusts the engine's numbers: the
old and reference log-probs are always recomputed by the one log-prob function at the sampling
temperature, so PPO ratios still start at 1 whichever engine sampled.

* ``hf`` (default) — :func:`alignkit.train.rollout.sample` in the training process; exact resume.
* ``vllm`` — :class:`VLLMEngine`, an optional dependency (``pip install alignkit[vllm]``, GPU).
  It loads the starting checkpoint once, and after every optimizer step the loop pushes the
  policy's weights into it (:meth:`VLLMEngine.sync_weights`, vLLM's ``load_weights``). Each
  response gets its own seed from ``(seed, step, row)``. Not supported with LoRA (vLLM would need
  the merged weights every step) nor under several processes (one engine per GPU is the next step).

The interface is tested on CPU with a fake engine (``tests/scale/test_engines.py``); the vLLM class
itself was not run in this repository's CI (no GPU there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from alignkit.data.batching import left_pad
from alignkit.train.rollout import Rollout


@dataclass
class Completion:
    """One sampled response: its token ids (ending with the stop token when it stopped)."""

    token_ids: list[int]
    stopped: bool


class RolloutEngine(Protocol):
    def generate(
        self,
        prompts: Sequence[list[int]],
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        stop_ids: Sequence[int],
        seeds: Sequence[int],
    ) -> list[Completion]: ...

    def sync_weights(self, model: torch.nn.Module) -> None: ...


def rollout_from_completions(
    prompts: Sequence[list[int]], completions: Sequence[Completion], pad_id: int, device: torch.device | str = "cpu"
) -> Rollout:
    """The ``(B, P)`` + ``(B, R)`` rollout grid of engine completions (``logprobs`` left 0: the loop recomputes them).

    Tokens after a row's first stop token are dropped, as :func:`~alignkit.train.rollout.sample`
    would never have produced them; an empty completion is not a response and is an error.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"the engine returned {len(completions)} completions for {len(prompts)} prompts")
    padded = left_pad([list(p) for p in prompts], pad_id)
    rows = []
    for i, c in enumerate(completions):
        if not c.token_ids:
            raise ValueError(f"the engine returned an empty completion for prompt {i}")
        rows.append(list(c.token_ids))
    width = max(len(r) for r in rows)
    response_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    response_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        response_ids[i, : len(r)] = torch.tensor(r)
        response_mask[i, : len(r)] = True
    return Rollout(
        prompt_ids=padded["input_ids"].to(device),
        prompt_mask=padded["attention_mask"].to(device),
        response_ids=response_ids.to(device),
        response_mask=response_mask.to(device),
        logprobs=torch.zeros((len(rows), width), device=device),
        stopped=torch.tensor([c.stopped for c in completions], dtype=torch.bool, device=device),
    )


def row_seeds(seed: int, step: int, rows: Sequence[int]) -> list[int]:
    """One sampling seed per response, from (seed, step, global row): independent of batching."""
    return [(seed * 1_000_003 + step * 7_919 + int(r) * 104_729 + 17) % (2**31 - 1) for r in rows]


class VLLMEngine:
    """Rollouts sampled by vLLM (optional dependency; GPU). See the module docstring."""

    def __init__(self, model_path: str, *, dtype: str = "auto", seed: int = 0, gpu_memory_utilization: float = 0.3) -> None:
        try:
            import vllm  # optional dependency: imported only when this engine is asked for
        except ImportError as err:
            raise ImportError("--rollout-engine vllm needs vLLM: pip install 'alignkit[vllm]' (GPU only)") from err
        self.vllm = vllm
        self.llm = vllm.LLM(model=model_path, dtype=dtype, seed=seed, gpu_memory_utilization=gpu_memory_utilization)

    def generate(
        self,
        prompts: Sequence[list[int]],
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        stop_ids: Sequence[int],
        seeds: Sequence[int],
    ) -> list[Completion]:
        params = [
            self.vllm.SamplingParams(
                n=1,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_new_tokens,
                stop_token_ids=list(stop_ids),
                seed=int(s),
                detokenize=False,
            )
            for s in seeds
        ]
        inputs = [{"prompt_token_ids": list(p)} for p in prompts]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        stops = set(stop_ids)
        out = []
        for o in outputs:
            ids = list(o.outputs[0].token_ids)
            out.append(Completion(ids, bool(ids) and ids[-1] in stops))
        return out

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Push the policy's current weights into vLLM's copy (names as in ``state_dict``)."""
        weights = [(name, tensor.detach()) for name, tensor in model.state_dict().items()]
        apply_model = getattr(self.llm, "apply_model", None)
        if apply_model is not None:  # vLLM >= 0.8
            apply_model(lambda m: m.load_weights(weights))
            return
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.model.load_weights(weights)


def build_engine(config: Any, policy: torch.nn.Module) -> RolloutEngine | None:
    """The engine ``config.rollout_engine`` names (``None`` for alignkit's own sampler)."""
    if getattr(config, "rollout_engine", "hf") == "hf":
        return None
    if config.lora:
        raise ValueError("--rollout-engine vllm does not support --lora yet (vLLM would need merged weights every step)")
    return VLLM_FACTORY(config, policy)


def _vllm(config: Any, policy: torch.nn.Module) -> RolloutEngine:
    return VLLMEngine(
        config.model, dtype=config.dtype, seed=config.seed, gpu_memory_utilization=config.vllm_gpu_memory_utilization
    )


VLLM_FACTORY: Callable[[Any, torch.nn.Module], RolloutEngine] = _vllm  # tests swap in a fake engine here
