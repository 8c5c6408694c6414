"""Running battles: every pair of models answers the same prompt, a judge picks a winner.

A *judge* is any callable ``judge(prompt, a, b)`` returning ``"A"``, ``"B"`` or ``"tie"``, or a
dict ``{"overall": verdict, "criteria": {"helpfulness": verdict, ...}}`` (the shape simulated
annotators' ``compare`` returns) when it rates criteria separately. People, LLM judges, simulated
annotators and ground-truth scorers all fit that one signature.

Judges are biased towards a position (AlpacaEval, MT-Bench), so :func:`run_battles` draws which
model is shown first at random per battle, and :class:`SwapConsistentJudge` asks both orders and
only keeps verdicts that survive the swap, counting how often they flip.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

from alignkit.data.chat import prompt_text
from alignkit.evaluate.ratings import Battle

Verdict = str  # "A" | "B" | "tie"
Judge = Callable[[str, str, str], Any]
CRITERIA = ("helpfulness", "honesty", "harmlessness")
_FLIP = {"A": "B", "B": "A", "tie": "tie"}


def normalize_verdict(v: Any) -> Verdict:
    """Accept "A"/"B"/"tie" in any case (and "a"/"b"); anything else is an error."""
    if isinstance(v, str):
        s = v.strip()
        if s.upper() in ("A", "B"):
            return s.upper()
        if s.lower() == "tie":
            return "tie"
    raise ValueError(f"judge returned {v!r}; expected 'A', 'B' or 'tie'")


def split_verdict(v: Any) -> tuple[Verdict, dict[str, Verdict]]:
    """A judge's answer as (overall verdict, per-criterion verdicts)."""
    if isinstance(v, Mapping):
        if "overall" not in v:
            raise ValueError(f"judge returned a dict without 'overall': {dict(v)!r}")
        criteria = {str(k): normalize_verdict(x) for k, x in (v.get("criteria") or {}).items()}
        return normalize_verdict(v["overall"]), criteria
    return normalize_verdict(v), {}


def run_battles(
    models: Mapping[str, Sequence[str]],
    prompts: Sequence[Any],
    judge: Judge,
    reference: str | None = None,
    seed: int = 0,
    shuffle_positions: bool = True,
    progress: bool = False,
) -> list[Battle]:
    """Judge every pair of models on every prompt (or every model against ``reference``).

    ``models[name][i]`` is that model's response to ``prompts[i]``. Returns battle records with
    ``criterion="overall"`` plus, when the judge gives per-criterion verdicts, one extra record per
    criterion (so ``BradleyTerry(criterion="honesty")`` rates honesty alone). Each record also
    carries ``prompt_index``. With ``shuffle_positions`` the first-shown model is drawn at random
    (seeded), so a position-biased judge adds noise rather than a systematic advantage.
    """
    names = list(models)
    if len(names) < 2:
        raise ValueError(f"need at least two models to battle, got {names}")
    for name in names:
        if len(models[name]) != len(prompts):
            raise ValueError(f"model {name!r} has {len(models[name])} responses for {len(prompts)} prompts")
    if reference is not None and reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models {names}")
    pairs = list(itertools.combinations(names, 2)) if reference is None else [(m, reference) for m in names if m != reference]
    rng = random.Random(seed)
    battles: list[Battle] = []
    jobs = [(i, pair) for i in range(len(prompts)) for pair in pairs]
    for i, (m1, m2) in tqdm(jobs, desc="battles", disable=not progress):
        a, b = (m2, m1) if shuffle_positions and rng.random() < 0.5 else (m1, m2)
        try:
            overall, criteria = split_verdict(judge(prompt_text(prompts[i]), models[a][i], models[b][i]))
        except ValueError as err:
            raise ValueError(f"prompt {i}, {a!r} vs {b!r}: {err}") from err
        for criterion, verdict in [("overall", overall), *criteria.items()]:
            winner = {"A": "model_a", "B": "model_b", "tie": "tie"}[verdict]
            battles.append({"model_a": a, "model_b": b, "winner": winner, "criterion": criterion, "prompt_index": i})
    return battles


def scorer_judge(
    score_fn: Callable[[str, str], Any],
    criterion: str = "utility",
    tie_eps: float = 1e-9,
    criteria: Iterable[str] | None = None,
) -> Judge:
    """A judge that knows the truth: compares ``score_fn(prompt, response).<criterion>``.

    Scores within ``tie_eps`` of each other are a tie. With ``criteria`` (e.g. :data:`CRITERIA`)
    the judge also returns per-criterion verdicts. Scores are cached per (prompt, response), since
    each response meets several opponents.
    """
    criteria = tuple(criteria or ())
    cache: dict[tuple[str, str], Any] = {}

    def score(prompt: str, response: str) -> Any:
        key = (prompt, response)
        if key not in cache:
            cache[key] = score_fn(prompt, response)
        return cache[key]

    def compare(sa: Any, sb: Any, attr: str) -> Verdict:
        try:
            xa, xb = float(getattr(sa, attr)), float(getattr(sb, attr))
        except AttributeError as err:
            raise ValueError(f"score object {type(sa).__name__} has no attribute {attr!r}") from err
        if abs(xa - xb) <= tie_eps:
            return "tie"
        return "A" if xa > xb else "B"

    def judge(prompt: str, a: str, b: str) -> Any:
        sa, sb = score(prompt, a), score(prompt, b)
        overall = compare(sa, sb, criterion)
        if not criteria:
            return overall
        return {"overall": overall, "criteria": {c: compare(sa, sb, c) for c in criteria}}

    return judge


class SwapConsistentJudge:
    """Ask a judge in both orders; keep a verdict only if it survives the swap, else call it a tie.

    ``consistency_rate`` is the share of calls whose overall verdicts agreed after un-swapping
    (1 - flip rate, the number to report next to any LLM-judge result); ``first_position_rate`` is
    how often the judge preferred whichever answer it saw first, among its non-tie verdicts (0.5
    for an unbiased judge). Per-criterion consistency is kept in ``criteria_consistency``.
    """

    def __init__(self, judge: Judge):
        self.judge = judge
        self.n_calls = 0
        self.n_consistent = 0
        self.n_first = 0
        self.n_decisive = 0
        self._crit_calls: dict[str, int] = {}
        self._crit_consistent: dict[str, int] = {}

    def _merge(self, v1: Verdict, v2_swapped: Verdict) -> tuple[Verdict, bool]:
        v2 = _FLIP[v2_swapped]  # back to the original order
        return (v1, True) if v1 == v2 else ("tie", False)

    def __call__(self, prompt: str, a: str, b: str) -> Any:
        o1, c1 = split_verdict(self.judge(prompt, a, b))
        o2, c2 = split_verdict(self.judge(prompt, b, a))
        self.n_calls += 1
        for v in (o1, o2):
            if v != "tie":
                self.n_decisive += 1
                self.n_first += v == "A"
        overall, ok = self._merge(o1, o2)
        self.n_consistent += ok
        if not c1:
            return overall
        criteria = {}
        for name in c1:
            if name not in c2:
                raise ValueError(f"judge gave criterion {name!r} in one order but not the other")
            criteria[name], ok = self._merge(c1[name], c2[name])
            self._crit_calls[name] = self._crit_calls.get(name, 0) + 1
            self._crit_consistent[name] = self._crit_consistent.get(name, 0) + ok
        return {"overall": overall, "criteria": criteria}

    @property
    def consistency_rate(self) -> float:
        return self.n_consistent / self.n_calls if self.n_calls else float("nan")

    @property
    def first_position_rate(self) -> float:
        return self.n_first / self.n_decisive if self.n_decisive else float("nan")

    @property
    def criteria_consistency(self) -> dict[str, float]:
        return {k: self._crit_consistent[k] / n for k, n in self._crit_calls.items()}


def swap_consistent_judge(judge: Judge) -> SwapConsistentJudge:
    """Wrap an (LLM) judge with position swapping; see :class:`SwapConsistentJudge`."""
    return SwapConsistentJudge(judge)
