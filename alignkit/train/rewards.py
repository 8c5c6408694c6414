"""Reward sources for online RL, and their weighted mix.

A reward source is a plain batched callable ``fn(prompts, responses) -> list[float]`` over text, so
anything that can judge a response can drive RL. Three kinds are built in, each named by a spec:

* ``rm:PATH`` — a reward model trained with ``alignkit rm``, *normalised* with the mean/std stored
  next to it (``reward_stats.json``), so mixing it with other sources has a meaningful scale;
* ``sandbox`` or ``sandbox:BUILD_FOLDER`` — the sandbox world's ground-truth utility (rule-based),
  a plug-in: resolved by name through ``importlib`` (``alignkit.sandbox.reward.sandbox_reward``),
  because the sandbox is a client of the library and the library never imports it directly;
* ``python:package.module:function`` — your own per-pair ``function(prompt, response) -> float``;
  if it also takes a ``label`` keyword it receives the row's ground truth (``label=None`` when
  the caller has none).

Ground truth ("labels") reaches only the sources that ask for it: ``CombinedReward`` takes an optional
``labels`` list and passes it to sources marked ``accepts_labels``. The call shapes of the engines
teams move to (TRL's ``GRPOTrainer``, verl's ``compute_score``, OpenRLHF's remote reward server) wrap
these specs in :mod:`alignkit.train.reward_adapters`.

Several sources mix by weights: ``"rm:out/rm,0.2*python:my.rules:brevity"`` is
``1.0 * rm + 0.2 * brevity`` (see :func:`parse_reward` and :func:`combine`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from alignkit.models.reward import RewardScorer
from alignkit.plugins import load_object

RewardFn = Callable[[Sequence[Any], Sequence[str]], list[float]]


def accepts_label(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes a ``label`` keyword (or any keyword through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return any(p.name == "label" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def per_pair(fn: Callable[..., float]) -> RewardFn:
    """Lift a ``fn(prompt, response) -> float`` (or ``fn(prompt, response, label=...)``) to the batched form."""
    takes_label = accepts_label(fn)

    def batched(prompts: Sequence[Any], responses: Sequence[str], labels: Sequence[Any] | None = None) -> list[float]:
        if takes_label:
            given = list(labels) if labels is not None else [None] * len(responses)
            return [float(fn(p, r, label=g)) for p, r, g in zip(prompts, responses, given)]
        return [float(fn(p, r)) for p, r in zip(prompts, responses)]

    batched.__name__ = getattr(fn, "__name__", "reward")
    batched.accepts_labels = takes_label  # type: ignore[attr-defined]
    return batched


def _reward_model(path: str) -> RewardFn:
    scorer = RewardScorer(path, normalize=True)

    def rm(prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
        return [float(x) for x in scorer.score(list(prompts), list(responses))]

    return rm


SANDBOX_REWARD = "alignkit.sandbox.reward:sandbox_reward"  # plug-in: sandbox_reward(folder | None) -> RewardFn


def _sandbox(folder: str | None) -> RewardFn:
    fn: RewardFn = load_object(SANDBOX_REWARD, what="reward 'sandbox'")(folder)
    return fn


def _python(target: str) -> RewardFn:
    fn = load_object(target, what=f"reward 'python:{target}'", scheme="python:")
    return per_pair(fn)


def load_reward_fn(spec: str) -> RewardFn:
    """One reward source from its spec (``rm:PATH``, ``sandbox[:FOLDER]``, ``python:mod:fn``)."""
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    if kind == "rm":
        if not rest:
            raise ValueError("reward 'rm:' needs the reward model folder, e.g. rm:out/rm")
        if not Path(rest).exists():
            raise FileNotFoundError(f"reward model folder '{rest}' does not exist (reward spec '{spec}')")
        return _reward_model(rest)
    if kind == "sandbox":
        return _sandbox(rest or None)
    if kind == "python":
        return _python(rest)
    raise ValueError(f"unknown reward spec '{spec}': expected rm:PATH, sandbox[:BUILD_FOLDER] or python:module:function")


def parse_reward(text: str) -> list[tuple[float, str]]:
    """``"rm:a,0.5*python:m:f"`` -> ``[(1.0, "rm:a"), (0.5, "python:m:f")]``."""
    parts = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        weight, star, spec = item.partition("*")
        if star:
            try:
                w = float(weight)
            except ValueError as err:
                raise ValueError(f"reward '{item}': the weight before '*' must be a number") from err
            parts.append((w, spec.strip()))
        else:
            parts.append((1.0, item))
    if not parts:
        raise ValueError("no reward given: expected e.g. 'sandbox' or 'rm:out/rm,0.2*python:my.mod:fn'")
    return parts


@dataclass
class CombinedReward:
    """Weighted sum of sources; keeps each source's last mean for logging."""

    sources: list[tuple[str, float, RewardFn]]
    last: dict[str, float] = field(default_factory=dict)

    def __call__(self, prompts: Sequence[Any], responses: Sequence[str], labels: Sequence[Any] | None = None) -> list[float]:
        if labels is not None and len(labels) != len(responses):
            raise ValueError(f"got {len(labels)} labels for {len(responses)} responses")
        total = [0.0] * len(responses)
        self.last = {}
        for name, weight, fn in self.sources:
            if labels is not None and getattr(fn, "accepts_labels", False):
                scores = [float(s) for s in cast(Any, fn)(prompts, responses, labels=labels)]
            else:
                scores = [float(s) for s in fn(prompts, responses)]
            if len(scores) != len(responses):
                raise ValueError(f"reward '{name}' returned {len(scores)} scores for {len(responses)} responses")
            bad = [s for s in scores if not math.isfinite(s)]
            if bad:
                raise ValueError(f"reward '{name}' returned a non-finite score ({bad[0]})")
            self.last[name] = sum(scores) / max(len(scores), 1)
            total = [t + weight * s for t, s in zip(total, scores)]
        return total


def combine(sources: Sequence[tuple[float, RewardFn]] | Sequence[tuple[str, float, RewardFn]]) -> CombinedReward:
    """Mix ``(weight, fn)`` (or ``(name, weight, fn)``) sources into one reward function."""
    named: list[tuple[str, float, RewardFn]] = []
    for i, src in enumerate(sources):
        if len(src) == 2:
            weight, fn = cast(tuple[float, RewardFn], src)
            named.append((getattr(fn, "__name__", f"reward{i}"), float(weight), fn))
        else:
            name, weight, fn = cast(tuple[str, float, RewardFn], src)
            named.append((str(name), float(weight), fn))
    return CombinedReward(named)


def build_reward(text: str) -> CombinedReward:
    """The reward of a config's ``reward`` field, each source named by its spec."""
    return combine([(spec, w, load_reward_fn(spec)) for w, spec in parse_reward(text)])
