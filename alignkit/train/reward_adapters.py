"""alignkit's rewards in the call shapes of other RL engines: TRL, verl and OpenRLHF.

Teams that outgrow one machine move RL to TRL's ``GRPOTrainer``, verl or OpenRLHF; the reward they
trained or wrote for alignkit (``rm:PATH``, ``sandbox[:FOLDER]``, ``python:mod:fn``, weighted mixes;
:mod:`alignkit.train.rewards`) should go with them unchanged. Each engine calls a reward differently:

* TRL ``GRPOTrainer(reward_funcs=[f])``: ``f(prompts, completions, **kwargs) -> list[float]``, one
  batch at a time; prompts and completions are strings (standard datasets) or message lists
  (conversational: a completion is ``[{"role": "assistant", "content": ...}]``); the dataset's
  other columns arrive as keyword lists (the ground truth, say). The function's ``__name__``
  names its column in TRL's logs. → :func:`trl_reward`.
* verl ``custom_reward_function`` (``path`` + ``name``): ``compute_score(data_source,
  solution_str, ground_truth, extra_info=None) -> float``, one response at a time, *without the
  prompt*: it is read from ``extra_info["prompt"]`` of the verl data. → :func:`verl_compute_score`.
* OpenRLHF ``--remote_rm_url http://host:port/get_reward``: a POST with JSON ``{"query": [...],
  "prompts": [...], "labels": [...]}`` where each query is the prompt followed by the response;
  the answer is ``{"rewards": [...]}`` (plus ``scores``/``extra_logs``). → :func:`openrlhf_rewards`,
  served by ``alignkit reward-server`` (:mod:`alignkit.ai.serving.reward_server`).

The reward model and sandbox world load once, when the adapter is built, not per call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from alignkit.train.rewards import CombinedReward, build_reward

TRLRewardFunc = Callable[..., list[float]]
LABEL_COLUMNS = ("ground_truth", "label", "labels", "answer", "solution")


def completion_text(completion: Any) -> str:
    """A TRL completion as text: a string, or the assistant message(s) of a conversational one."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict) and "content" in completion:
        return str(completion["content"])
    if isinstance(completion, list) and all(isinstance(m, dict) and "content" in m for m in completion):
        return "".join(str(m["content"]) for m in completion if m.get("role", "assistant") == "assistant")
    raise ValueError(f"completion {completion!r} is neither a string nor a list of {{role, content}} messages")


def _name(spec: str) -> str:
    return "alignkit_" + (re.sub(r"[^0-9A-Za-z]+", "_", spec).strip("_") or "reward")


def trl_reward(spec: str | CombinedReward, label_column: str | None = None) -> TRLRewardFunc:
    """A reward function for TRL's ``GRPOTrainer`` (``reward_funcs=[trl_reward("rm:out/rm")]``).

    Ground truth for ``python:`` functions that take a ``label``: the keyword column
    ``label_column``, or else the first of ``ground_truth``, ``label``, ``labels``, ``answer``,
    ``solution`` that TRL passes.
    """
    reward = build_reward(spec) if isinstance(spec, str) else spec

    def reward_func(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        columns = [label_column] if label_column else list(LABEL_COLUMNS)
        labels = next((kwargs[c] for c in columns if c and kwargs.get(c) is not None), None)
        return reward(list(prompts), [completion_text(c) for c in completions], labels)

    reward_func.__name__ = _name(spec if isinstance(spec, str) else "reward")
    reward_func.__qualname__ = reward_func.__name__
    return reward_func


def verl_compute_score(spec: str | CombinedReward) -> Callable[..., float]:
    """A verl ``compute_score``: ``compute_score = verl_compute_score("sandbox")`` in the file verl's
    ``custom_reward_function.path`` names (``name: compute_score``).

    The prompt comes from ``extra_info["prompt"]`` (a string or a message list); ``ground_truth``
    reaches ``python:`` functions that take a ``label``.
    """
    reward = build_reward(spec) if isinstance(spec, str) else spec

    def compute_score(data_source: Any, solution_str: str, ground_truth: Any = None, extra_info: Any = None, **_: Any) -> float:
        prompt = extra_info.get("prompt") if isinstance(extra_info, dict) else None
        if prompt is None:
            raise ValueError(
                "verl passed no extra_info['prompt']; alignkit's rewards score a (prompt, response) pair, "
                "so put each row's prompt (a string or a message list) in extra_info.prompt of the verl data."
            )
        return float(reward([prompt], [solution_str], [ground_truth])[0])

    return compute_score


def split_queries(queries: Sequence[str], prompts: Sequence[str]) -> list[str]:
    """Responses out of OpenRLHF's queries (prompt + response), checked to start with their prompt."""
    if len(queries) != len(prompts):
        raise ValueError(f"got {len(queries)} queries but {len(prompts)} prompts")
    responses = []
    for i, (query, prompt) in enumerate(zip(queries, prompts)):
        if not query.startswith(prompt):
            raise ValueError(f"query {i} does not start with its prompt (OpenRLHF sends query = prompt + response)")
        responses.append(query[len(prompt) :])
    return responses


def openrlhf_rewards(reward: CombinedReward, payload: dict[str, Any]) -> dict[str, Any]:
    """Score one OpenRLHF remote-RM request: ``{"query", "prompts", "labels"}`` -> ``{"rewards", "scores", "extra_logs"}``.

    ``query`` alone (older OpenRLHF) is scored with an empty prompt; ``labels`` may be absent.
    """
    queries = payload.get("query")
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise ValueError("'query' must be a list of strings")
    prompts = payload.get("prompts")
    if prompts is None:
        prompts = [""] * len(queries)
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise ValueError("'prompts' must be a list of strings")
    labels = payload.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(queries)):
        raise ValueError(f"'labels' must be a list of {len(queries)} items")
    responses = split_queries(queries, prompts)
    rewards = reward(prompts, responses, labels)
    return {"rewards": rewards, "scores": rewards, "extra_logs": {f"reward/{k}": v for k, v in reward.last.items()}}
