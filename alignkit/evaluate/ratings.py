"""Ratings from pairwise battles: Bradley–Terry (the ladder), online Elo (a cross-check), win rates.

A *battle* is a plain dict ``{"model_a": str, "model_b": str, "winner": "model_a"|"model_b"|"tie"}``
with an optional ``"criterion"`` (battles without one count as ``"overall"``). Plain dicts keep
battles trivially JSON-serialisable and compatible with FastChat's battle tables.

Ties follow FastChat by default: a tie counts as half a win for each side. For Elo this is the
actual score 0.5; for Bradley–Terry it adds half a win to each direction of the pair's win matrix
(so ties pull two ratings together without being dropped). ``ties="ignore"`` drops them;
``ties="davidson"`` models them (Davidson 1970: ``P(tie) ∝ ν √(π_i π_j)``).

Ratings are reported on the Elo scale: ``rating = base + scale * s / ln(10)`` where ``s`` is the
natural-log strength, so ``P(i beats j) = 1 / (1 + 10 ** ((r_j - r_i) / scale))`` for both models.

Bradley–Terry only depends on battles through the counts of each (model_a, model_b, winner)
outcome, so it is fitted on those counts and bootstrapped by multinomial resampling of them, which
is the same distribution as resampling battles with replacement: cost grows with the number of
model pairs, not of battles (issue #18: 100 rounds on 1M battles in well under a second).

Estimators have the scikit-learn shape: configure in ``__init__``, ``fit(battles)`` returns self,
results in trailing-underscore attributes (``ratings_``), ``predict_proba(a, b)``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from alignkit.evaluate.stats import wilson_interval

Battle = dict[str, Any]
WINNERS = ("model_a", "model_b", "tie")
_SCORE = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}


def _battle_error(i: int, b: Any) -> ValueError | None:
    if not isinstance(b, dict):
        return ValueError(f"battle {i}: expected a dict with model_a, model_b, winner; got {type(b).__name__}")
    for field in ("model_a", "model_b", "winner"):
        if field not in b:
            return ValueError(f"battle {i}: missing field {field!r} (expected model_a, model_b, winner)")
    if b["winner"] not in WINNERS:
        return ValueError(f"battle {i}: winner={b['winner']!r}, expected one of {WINNERS}")
    if b["model_a"] == b["model_b"]:
        return ValueError(f"battle {i}: model_a and model_b are both {b['model_a']!r}")
    return None


def _check_battles(battles: Iterable[Battle]) -> list[Battle]:
    """Validate battle records; name the offending index and field in the error."""
    out = []
    for i, b in enumerate(battles):
        err = _battle_error(i, b)
        if err is not None:
            raise err
        out.append(b)
    return out


def filter_battles(battles: Iterable[Battle], criterion: str | None = "overall") -> list[Battle]:
    """Battles of one criterion (missing criterion means ``"overall"``); ``None`` keeps all."""
    battles = _check_battles(battles)
    if criterion is None:
        return battles
    return [b for b in battles if b.get("criterion", "overall") == criterion]


def split_by_criterion(battles: Iterable[Battle]) -> dict[str, list[Battle]]:
    """Group battles by their ``criterion`` (``"overall"`` when absent)."""
    groups: dict[str, list[Battle]] = {}
    for b in _check_battles(battles):
        groups.setdefault(b.get("criterion", "overall"), []).append(b)
    return groups


@dataclass
class PairCounts:
    """Battles reduced to outcome counts: cell ``c`` is ``(ia[c], ib[c], outcome[c])`` seen ``count[c]`` times.

    ``outcome`` is A's score (1, 0 or 0.5). Everything Bradley–Terry needs, in O(pairs) memory.
    """

    models: list[str]
    ia: np.ndarray
    ib: np.ndarray
    score: np.ndarray
    count: np.ndarray

    @property
    def n(self) -> int:
        return int(self.count.sum())


def pair_counts(battles: Iterable[Battle], criterion: str | None = "overall") -> PairCounts:
    """Count (model_a, model_b, winner) outcomes in one pass, validating each distinct outcome once."""
    counter: Counter[tuple[Any, Any, Any]] = Counter()
    battles = battles if isinstance(battles, Sequence) else list(battles)
    try:
        if criterion is None:
            counter.update((b["model_a"], b["model_b"], b["winner"]) for b in battles)
        else:
            counter.update(
                (b["model_a"], b["model_b"], b["winner"]) for b in battles if b.get("criterion", "overall") == criterion
            )
        bad = any(w not in _SCORE or a == bb for a, bb, w in counter)
    except (KeyError, TypeError, AttributeError):
        bad = True
    if bad:  # find and name the first bad record (slow path, only on error)
        _check_battles(battles)
    if not counter:
        raise ValueError(f"no battles to fit (criterion={criterion!r})")
    models = sorted({k[0] for k in counter} | {k[1] for k in counter})
    index = {m: i for i, m in enumerate(models)}
    keys = list(counter)
    return PairCounts(
        models=models,
        ia=np.array([index[k[0]] for k in keys], dtype=np.int64),
        ib=np.array([index[k[1]] for k in keys], dtype=np.int64),
        score=np.array([_SCORE[k[2]] for k in keys]),
        count=np.array([counter[k] for k in keys], dtype=float),
    )


def _encode(battles: list[Battle]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Models (sorted) and per-battle index of A, index of B and A's score (1, 0 or 0.5)."""
    models = sorted({b["model_a"] for b in battles} | {b["model_b"] for b in battles})
    index = {m: i for i, m in enumerate(models)}
    ia = np.array([index[b["model_a"]] for b in battles], dtype=np.int64)
    ib = np.array([index[b["model_b"]] for b in battles], dtype=np.int64)
    score = np.array([_SCORE[b["winner"]] for b in battles])
    return models, ia, ib, score


def _expected(ra: float | np.ndarray, rb: float | np.ndarray, scale: float) -> Any:
    return 1.0 / (1.0 + 10.0 ** ((rb - ra) / scale))


def _percentile_ci(samples: np.ndarray, models: list[str], ci: float) -> dict[str, tuple[float, float]]:
    lo_q, hi_q = 100 * (1 - ci) / 2, 100 * (1 + ci) / 2
    out = {}
    for j, m in enumerate(models):
        col = samples[:, j][~np.isnan(samples[:, j])]
        out[m] = (float(np.percentile(col, lo_q)), float(np.percentile(col, hi_q))) if col.size else (math.nan, math.nan)
    return out


class _Rater:
    """Shared pieces: anchoring, ``predict_proba``."""

    base: float
    scale: float
    criterion: str | None
    anchor: str | None
    ratings_: dict[str, float]

    def _anchored(self, ratings: np.ndarray, models: list[str]) -> np.ndarray:
        """Shift so the anchor model sits at ``base`` (ratings are only defined up to a shift)."""
        if self.anchor is None:
            return ratings
        if self.anchor not in models:
            raise ValueError(f"anchor model {self.anchor!r} has no battles; models are {models}")
        return ratings - ratings[models.index(self.anchor)] + self.base

    def predict_proba(self, model_a: str, model_b: str) -> float:
        """P(model_a beats model_b) under the fitted ratings (a tie counts as half a win)."""
        for m in (model_a, model_b):
            if m not in self.ratings_:
                raise KeyError(f"unknown model {m!r}; fitted models: {sorted(self.ratings_)}")
        return float(_expected(self.ratings_[model_a], self.ratings_[model_b], self.scale))

    def _store_bootstrap(self, samples: np.ndarray, models: list[str], ci: float) -> dict[str, tuple[float, float]]:
        self.bootstrap_ratings_ = samples
        self.ci_ = _percentile_ci(samples, models, ci)
        return self.ci_


class EloRating(_Rater):
    """Online Elo as in FastChat's ``compute_elo``: one pass over battles in the given order.

    Each battle moves both ratings by ``k * (S - E)``, where ``S`` is A's score (1, 0.5 for a tie,
    0) and ``E = 1 / (1 + 10 ** ((r_b - r_a) / scale))``. Small ``k`` (FastChat uses 4) keeps the
    ladder stable but makes it depend on the order of battles, and recent battles weigh more: when
    battles arrive grouped (by prompt category, by time), the last group dominates. So it is only a
    cross-check of Bradley–Terry (which is order-free), and its bootstrap reports the *median* over
    resampled, reshuffled orders as the point estimate (as Chatbot Arena's bootstrap Elo does), so
    the interval is the spread of that same distribution and always contains it. The single pass in
    the given order is kept in ``ordered_ratings_``.
    """

    def __init__(
        self,
        k: float = 4.0,
        base: float = 1000.0,
        scale: float = 400.0,
        criterion: str | None = "overall",
        anchor: str | None = None,
    ):
        self.k, self.base, self.scale, self.criterion, self.anchor = k, base, scale, criterion, anchor

    def _ratings_from_arrays(self, n_models: int, ia: np.ndarray, ib: np.ndarray, score: np.ndarray) -> np.ndarray:
        r = [float(self.base)] * n_models
        k, scale = self.k, self.scale
        # A plain Python loop over Python floats: each update depends on the previous one, so it
        # cannot be vectorised, and float arithmetic is ~10x faster than numpy scalar indexing.
        for a, b, sa in zip(ia.tolist(), ib.tolist(), score.tolist()):
            e = 1.0 / (1.0 + 10.0 ** ((r[b] - r[a]) / scale))
            r[a] += k * (sa - e)
            r[b] += k * ((1.0 - sa) - (1.0 - e))
        return np.array(r)

    def fit(self, battles: Iterable[Battle]) -> EloRating:
        """One pass in the given order (``ratings_`` = ``ordered_ratings_`` until :meth:`bootstrap`)."""
        battles = filter_battles(battles, self.criterion)
        if not battles:
            raise ValueError(f"no battles to fit (criterion={self.criterion!r})")
        models, ia, ib, score = _encode(battles)
        r = self._anchored(self._ratings_from_arrays(len(models), ia, ib, score), models)
        self.models_ = models
        self.ratings_ = {m: float(x) for m, x in zip(models, r)}
        self.ordered_ratings_ = dict(self.ratings_)
        self.n_battles_ = len(battles)
        return self

    def bootstrap(
        self, battles: Iterable[Battle], rounds: int = 100, seed: int = 0, ci: float = 0.95, progress: bool = False
    ) -> dict[str, tuple[float, float]]:
        """Percentile CIs over ``rounds`` resamples of the battles (with replacement, in random order).

        Sets ``ratings_`` to the per-model median of those rounds (see the class docstring); every
        round is in ``bootstrap_ratings_`` (rounds x models; NaN where a model drew no battle).
        """
        battles = filter_battles(battles, self.criterion)
        self.fit(battles)
        models, ia, ib, score = _encode(battles)
        n, k = len(battles), len(models)
        rng = np.random.default_rng(seed)
        samples = np.full((rounds, k), np.nan)
        for r in tqdm(range(rounds), desc="bootstrap", disable=not progress):
            idx = rng.integers(0, n, size=n)  # i.i.d. draws: a resample and a random order at once
            present = np.zeros(k, dtype=bool)
            present[ia[idx]] = True
            present[ib[idx]] = True
            ratings = self._ratings_from_arrays(k, ia[idx], ib[idx], score[idx])
            if self.anchor is not None:
                a = models.index(self.anchor)
                if not present[a]:
                    continue
                ratings = ratings - ratings[a] + self.base
            samples[r, present] = ratings[present]
        out = self._store_bootstrap(samples, models, ci)
        self.ratings_ = {m: float(np.nanmedian(samples[:, j])) for j, m in enumerate(models)}
        return out


def _bt_strengths(wins: np.ndarray, reg: float, max_iter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Maximise ``sum_ij W_ij log sigmoid(s_i - s_j) - reg/2 * |s|^2`` by damped Newton steps.

    The log-likelihood is concave and its negative Hessian is the graph Laplacian of
    ``N_ij * p_ij * (1 - p_ij)`` (``N = W + W^T``), so each step solves one small linear system.
    With ``reg = 0`` the Laplacian is singular (ratings are only defined up to a shift), so the
    minimum-norm solution (``lstsq``) is used and the result is centred afterwards.
    """
    k = wins.shape[0]
    n = wins + wins.T
    s = np.zeros(k)

    def objective(x: np.ndarray) -> float:
        d = x[:, None] - x[None, :]
        # log sigmoid(d) = -log(1 + exp(-d)), computed stably.
        return float(-(wins * np.logaddexp(0.0, -d)).sum() - 0.5 * reg * (x @ x))

    f = objective(s)
    for _ in range(max_iter):
        d = s[:, None] - s[None, :]
        p = 0.5 * (1.0 + np.tanh(0.5 * d))  # sigmoid without overflow for large gaps
        grad = (wins - n * p).sum(axis=1) - reg * s
        if np.max(np.abs(grad)) < tol:
            break
        w = n * p * (1.0 - p)
        lap = np.diag(w.sum(axis=1)) - w + reg * np.eye(k)
        step = np.linalg.lstsq(lap, grad, rcond=None)[0]
        t = 1.0
        while t > 1e-8:  # backtracking keeps every step an ascent step
            f_new = objective(s + t * step)
            if f_new >= f - 1e-12:
                break
            t *= 0.5
        s, f = s + t * step, f_new
    return s - s.mean()


def _davidson_strengths(
    wins: np.ndarray, ties: np.ndarray, reg: float, max_iter: int = 100, tol: float = 1e-10
) -> tuple[np.ndarray, float]:
    """Davidson's (1970) tie model by Newton's method: strengths ``s`` and the tie parameter ``ν``.

    With ``d = s_i - s_j`` and ``D = e^{d/2} + e^{-d/2} + ν``: ``P(i wins) = e^{d/2}/D``,
    ``P(j wins) = e^{-d/2}/D``, ``P(tie) = ν/D``. ``wins[i, j]`` counts i's wins over j (no ties in
    it) and ``ties`` is symmetric. The parameters are ``(s, u = log ν)``; the log-likelihood is
    concave in them, and its derivatives per pair are (with ``c = 2 cosh(d/2)``, ``m = 2 sinh(d/2)``,
    ``N`` battles): ``∂d = (w_ij - w_ji)/2 - N m/(2D)``, ``∂u = t - N ν/D``, ``∂dd = -N (cD - m²)/(4D²)``,
    ``∂du = N m ν/(2D²)``, ``∂uu = -N ν c/D²``.
    """
    k = wins.shape[0]
    iu, ju = np.triu_indices(k, 1)
    w_ij, w_ji, t = wins[iu, ju], wins[ju, iu], ties[iu, ju]
    n = w_ij + w_ji + t
    keep = n > 0
    iu, ju, w_ij, w_ji, t, n = iu[keep], ju[keep], w_ij[keep], w_ji[keep], t[keep], n[keep]
    s, u = np.zeros(k), math.log(max(t.sum(), 0.5) / max(n.sum() - t.sum(), 0.5))

    def objective(s: np.ndarray, u: float) -> float:
        d = s[iu] - s[ju]
        log_d = np.logaddexp(np.logaddexp(d / 2, -d / 2), u)
        return float((w_ij * d / 2 - w_ji * d / 2 + t * u - n * log_d).sum() - 0.5 * reg * (s @ s))

    f = objective(s, u)
    for _ in range(max_iter):
        d = s[iu] - s[ju]
        nu = math.exp(u)
        c, m = 2 * np.cosh(d / 2), 2 * np.sinh(d / 2)
        big_d = c + nu
        g_d = (w_ij - w_ji) / 2 - n * m / (2 * big_d)
        h_dd = -n * (c * big_d - m * m) / (4 * big_d**2)
        h_du = n * m * nu / (2 * big_d**2)
        grad = np.zeros(k + 1)
        np.add.at(grad, iu, g_d)
        np.add.at(grad, ju, -g_d)
        grad[:k] -= reg * s
        grad[k] = float((t - n * nu / big_d).sum())
        if np.max(np.abs(grad)) < tol:
            break
        hess = np.zeros((k + 1, k + 1))
        np.add.at(hess, (iu, iu), h_dd)
        np.add.at(hess, (ju, ju), h_dd)
        np.add.at(hess, (iu, ju), -h_dd)
        np.add.at(hess, (ju, iu), -h_dd)
        np.add.at(hess[:k, k], iu, h_du)
        np.add.at(hess[:k, k], ju, -h_du)
        hess[k, :k] = hess[:k, k]
        hess[k, k] = float((-n * nu * c / big_d**2).sum())
        hess[:k, :k] -= reg * np.eye(k)
        step = np.linalg.lstsq(-hess, grad, rcond=None)[0]
        step_t = 1.0
        while step_t > 1e-8:
            f_new = objective(s + step_t * step[:k], u + step_t * float(step[k]))
            if f_new >= f - 1e-12:
                break
            step_t *= 0.5
        s, u, f = s + step_t * step[:k], u + step_t * float(step[k]), f_new
    return s - s.mean(), math.exp(u)


TieMode = Literal["half", "ignore", "davidson"]


class BradleyTerry(_Rater):
    """Bradley–Terry ratings by (lightly regularised) maximum likelihood.

    ``P(i beats j) = sigmoid(s_i - s_j)``; FastChat fits the same model by logistic regression.
    ``ties="half"`` (FastChat) counts a tie as half a win each way; ``"ignore"`` drops ties;
    ``"davidson"`` fits Davidson's tie parameter (``tie_param_`` = ν) alongside the strengths.

    ``reg`` is an L2 penalty ``reg/2 * |s|^2`` on the natural-log strengths. Without it a model that
    never lost would get an infinite rating and disconnected groups of models an arbitrary offset;
    the default 1e-4 is negligible next to the curvature one battle adds (up to 0.25), so ratings
    match the plain maximum-likelihood fit wherever that is finite. It is ``2 * alpha`` in
    ``choix.opt_pairwise`` terms (choix penalises ``alpha * |s|^2``). Ratings are centred on ``base``.

    Fitting and bootstrapping work on :func:`pair_counts`, never on the battle list itself.
    """

    def __init__(
        self,
        base: float = 1000.0,
        scale: float = 400.0,
        ties: TieMode = "half",
        reg: float = 1e-4,
        criterion: str | None = "overall",
        anchor: str | None = None,
        max_iter: int = 100,
    ):
        if ties not in ("half", "ignore", "davidson"):
            raise ValueError(f"ties={ties!r}, expected 'half', 'ignore' or 'davidson'")
        if reg < 0:
            raise ValueError(f"reg={reg} must be >= 0")
        self.base, self.scale, self.ties, self.reg = base, scale, ties, reg
        self.criterion, self.anchor, self.max_iter = criterion, anchor, max_iter

    def _fit_counts(self, k: int, pc: PairCounts, count: np.ndarray) -> tuple[np.ndarray, float | None]:
        """Ratings (Elo scale, centred) and Davidson's ν (or None) from one vector of cell counts."""
        wins = np.zeros((k, k))
        is_tie = pc.score == 0.5
        if self.ties == "davidson" and count[is_tie].sum() > 0:
            ties = np.zeros((k, k))
            dec = ~is_tie
            np.add.at(wins, (pc.ia[dec], pc.ib[dec]), count[dec] * pc.score[dec])
            np.add.at(wins, (pc.ib[dec], pc.ia[dec]), count[dec] * (1.0 - pc.score[dec]))
            np.add.at(ties, (pc.ia[is_tie], pc.ib[is_tie]), count[is_tie])
            ties = ties + ties.T
            s, nu = _davidson_strengths(wins, ties, self.reg, self.max_iter)
            return self.base + self.scale * s / math.log(10.0), nu
        keep = np.ones(len(count), dtype=bool) if self.ties == "half" else ~is_tie
        np.add.at(wins, (pc.ia[keep], pc.ib[keep]), count[keep] * pc.score[keep])
        np.add.at(wins, (pc.ib[keep], pc.ia[keep]), count[keep] * (1.0 - pc.score[keep]))
        # A rectified (gold-corrected) score may leave [0, 1]; a pair's wins are kept in [0, games]
        # (a no-op for ordinary outcomes).
        wins = np.clip(wins, 0.0, wins + wins.T)
        s = _bt_strengths(wins, self.reg, self.max_iter)
        return self.base + self.scale * s / math.log(10.0), (0.0 if self.ties == "davidson" else None)

    def fit_counts(self, pc: PairCounts) -> BradleyTerry:
        r, nu = self._fit_counts(len(pc.models), pc, pc.count)
        r = self._anchored(r, pc.models)
        self.models_ = pc.models
        self.ratings_ = {m: float(x) for m, x in zip(pc.models, r)}
        self.n_battles_ = pc.n
        self.tie_param_ = nu
        return self

    def fit(self, battles: Iterable[Battle]) -> BradleyTerry:
        return self.fit_counts(pair_counts(battles, self.criterion))

    def bootstrap_counts(
        self, pc: PairCounts, rounds: int = 100, seed: int = 0, ci: float = 0.95, progress: bool = False
    ) -> dict[str, tuple[float, float]]:
        self.fit_counts(pc)
        k, n = len(pc.models), pc.n
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(n, pc.count / n, size=rounds).astype(float)
        samples = np.full((rounds, k), np.nan)
        for r in tqdm(range(rounds), desc="bootstrap", disable=not progress):
            count = draws[r]
            present = np.zeros(k, dtype=bool)
            drawn = count > 0
            present[pc.ia[drawn]] = True
            present[pc.ib[drawn]] = True
            ratings, _ = self._fit_counts(k, pc, count)
            if self.anchor is not None:
                a = pc.models.index(self.anchor)
                if not present[a]:
                    continue
                ratings = ratings - ratings[a] + self.base
            samples[r, present] = ratings[present]
        return self._store_bootstrap(samples, pc.models, ci)

    def bootstrap(
        self, battles: Iterable[Battle], rounds: int = 100, seed: int = 0, ci: float = 0.95, progress: bool = False
    ) -> dict[str, tuple[float, float]]:
        """Percentile CIs from ``rounds`` refits on multinomial resamples of the outcome counts.

        Resampling N battles with replacement draws each distinct outcome a multinomial number of
        times, so resampling the counts is the same bootstrap (FastChat: 100 rounds) at a cost
        that does not grow with N. Also fits the full data (``ratings_``) and keeps every round in
        ``bootstrap_ratings_`` (rounds x models; NaN where a model drew no battle).
        """
        return self.bootstrap_counts(pair_counts(battles, self.criterion), rounds, seed, ci, progress)

    def bootstrap_clustered(
        self,
        battles: Iterable[Battle],
        rounds: int = 100,
        seed: int = 0,
        ci: float = 0.95,
        cluster: str = "prompt_index",
        draw: bool = True,
    ) -> dict[str, tuple[float, float]]:
        """Percentile CIs that resample *clusters* (prompts) and draw uncertain labels from their posteriors.

        With gold (battles carrying ``gold_winner``, the known answer of a *random* subset of the
        comparisons, e.g. expert labels) the fit is prediction-powered (Angelopoulos et al. 2023,
        "Prediction-powered inference", Science 382): each battle's outcome is its expected outcome
        ``ŷ`` plus, on gold battles, ``(y - ŷ) / π`` with ``π`` the gold share, so the fit's score
        equations are unbiased for the true labels' fit whatever the crowd's biases are (a bias
        that depends on the answers' content is invisible to Dawid–Skene and to any resampling of
        the crowd's own answers). Its interval is the bootstrap of that estimator (Zrnic 2024, "A
        note on the prediction-powered bootstrap"): clusters resampled with their gold flags, ``π``
        recomputed per round, ``ŷ`` the fixed posterior's expected outcome (``posterior_rounds`` and
        ``draw`` are not used: the rectifier carries the crowd's errors, whatever they are). A round
        without a gold battle is skipped. It is for a crowd with a *systematic* bias (a test shows
        it removing one); the sandbox crowd's biases are small, and there, with 20 % gold, it
        covered the same-prompts truth 96 % and the population truth only 88 % of the time at
        95 %, 155 Elo wide against the ordinary interval's 95 % / 93 % at 125 Elo
        (``benchmarks/judge_validation.py --people-gold 0.2``, issue #22).

        Two things a battle-level bootstrap misses (Miller 2024, "Adding error bars to evals"):
        battles that share a prompt are correlated (every pair of models meets on the same prompt),
        so the resampled unit is the cluster named by ``cluster``; and a label aggregated from noisy
        raters is itself uncertain. A battle may carry ``posterior``: ``[P(model_a better),
        P(model_b better), P(tie)]`` (people mode's Dawid–Skene posteriors). The point fit counts it
        as the *expected* outcome ``P(a) + P(tie)/2``: the BT score equations are linear in the
        outcome, so a calibrated posterior gives an unbiased fit where the argmax label is pulled
        towards 0.5 by the aggregation's errors. With ``draw`` each battle takes one outcome per round
        drawn from its posterior, the same for every resampled copy of it (a hierarchical bootstrap:
        clusters first, then the one unknown label of each), so a round is a complete data set as if
        the true labels had been observed (the interval is that of the true-label fit, which is wider than that of
        the expected outcomes by the labels' own variance: the safe side when the posteriors are
        estimated); without it the expected outcomes are resampled as they are. ``posterior_rounds``
        (rounds x 3) replaces the posterior round by round (people mode: annotators resampled). Battles without a
        posterior or a cluster behave as in :meth:`bootstrap` (one cluster per battle, a fixed
        winner). ``rounds=0``: the point fit only.
        """
        battles = filter_battles(battles, self.criterion)
        if not battles:
            raise ValueError(f"no battles to fit (criterion={self.criterion!r})")
        models, ia, ib, score = _encode(battles)
        probs = np.array([b.get("posterior") or [s == 1.0, s == 0.0, s == 0.5] for b, s in zip(battles, score)], dtype=float)
        if probs.shape != (len(battles), 3) or (probs < 0).any() or not np.allclose(probs.sum(1), 1.0):
            raise ValueError("a battle's posterior must be three probabilities [P(model_a), P(model_b), P(tie)] summing to 1")
        probs /= probs.sum(1, keepdims=True)
        soft = probs[:, 0] + 0.5 * probs[:, 2]
        gold_of = [b.get("gold_winner") for b in battles]
        if any(g is not None and g not in _SCORE for g in gold_of):
            raise ValueError(f"gold_winner must be one of {sorted(_SCORE)} or absent")
        is_gold = np.array([g is not None for g in gold_of])
        y_gold = np.array([_SCORE[g] if g is not None else 0.0 for g in gold_of])
        ppi = bool(is_gold.any())
        if self.ties == "davidson" and (ppi or not np.isin(soft, (0.0, 0.5, 1.0)).all()):
            raise ValueError("Davidson's tie model needs hard outcomes; use ties='half' with posteriors or gold")
        k, n = len(models), len(battles)

        def rectified(expected: np.ndarray, copies: np.ndarray) -> np.ndarray | None:
            shown = (copies * is_gold).sum()
            return expected + is_gold * copies.sum() / shown * (y_gold - expected) if shown else None

        point = rectified(soft, np.ones(n)) if ppi else soft
        self.fit_counts(PairCounts(models, ia, ib, point, np.ones(n)))  # type: ignore[arg-type]
        if rounds == 0:
            return {}
        keys = [b.get(cluster, ("battle", i)) for i, b in enumerate(battles)]
        _, group = np.unique(np.array([repr(x) for x in keys]), return_inverse=True)
        n_groups = int(group.max()) + 1
        # A battle's posterior per round: ``posterior_rounds`` (e.g. people's labels under annotator
        # resamples) where given, else its one posterior in every round.
        per_round = np.broadcast_to(probs, (rounds, n, 3)).copy()
        for i, b in enumerate(battles):
            given = b.get("posterior_rounds")
            if given is not None:
                given = np.asarray(given, dtype=float)
                if given.shape != (rounds, 3):
                    raise ValueError(f"battle {i}: posterior_rounds has shape {given.shape}, expected ({rounds}, 3)")
                per_round[:, i] = given / given.sum(1, keepdims=True)
        # Each battle as three cells (A wins, B wins, tie) when drawing, one soft cell otherwise.
        cells = PairCounts(models, np.tile(ia, 3), np.tile(ib, 3), np.repeat([1.0, 0.0, 0.5], n), np.zeros(3 * n))
        rng = np.random.default_rng(seed)
        samples = np.full((rounds, k), np.nan)
        for r in range(rounds):
            copies = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups))[group]
            if ppi:
                outcome = rectified(soft, copies)
                if outcome is None:
                    continue
                pc = PairCounts(models, ia, ib, outcome, copies.astype(float))
                count = pc.count
            elif draw:
                # One label per battle per round, shared by all its resampled copies: a copy is the
                # same comparison, whose true label is one value. Drawing per copy averaged the label
                # noise away over the copies and covered the truth 93 % of the time at 95 % (issue #22).
                cumulative = per_round[r].cumsum(1)
                drawn = (rng.random(n)[:, None] > cumulative[:, :2]).sum(1)
                count = np.zeros(3 * n)
                count[drawn * n + np.arange(n)] = copies
                pc = cells
            else:
                expected = per_round[r, :, 0] + 0.5 * per_round[r, :, 2]
                pc = PairCounts(models, ia, ib, expected, copies.astype(float))
                count = pc.count
            present = np.zeros(k, dtype=bool)
            present[ia[copies > 0]] = True
            present[ib[copies > 0]] = True
            ratings, _ = self._fit_counts(k, pc, count)
            if self.anchor is not None:
                a = models.index(self.anchor)
                if not present[a]:
                    continue
                ratings = ratings - ratings[a] + self.base
            samples[r, present] = ratings[present]
        return self._store_bootstrap(samples, models, ci)


# ------------------------------------------------------------------------------- style control


def _style_value(b: Battle, name: str, side: str) -> float | None:
    """``name`` of side ``a``/``b``: ``{name}_{side}`` on the battle or in ``conv_metadata``
    (a dict value, like Arena's markdown counts, is summed); ``length`` also reads Arena's
    ``sum_assistant_{side}_tokens`` or the whitespace-token count of ``response_{side}``."""
    meta = b.get("conv_metadata") or {}
    keys = [f"{name}_{side}"]
    if name == "length":
        keys.append(f"sum_assistant_{side}_tokens")
    for key in keys:
        for source in (b, meta):
            if key in source and source[key] is not None:
                v = source[key]
                return float(sum(v.values())) if isinstance(v, dict) else float(v)
    if name == "length" and isinstance(b.get(f"response_{side}"), str):
        return float(len(b[f"response_{side}"].split()))
    return None


def style_features(battles: Sequence[Battle], names: Sequence[str]) -> np.ndarray:
    """Arena's style features: per battle ``(x_a - x_b) / (x_a + x_b)`` (0 when both are 0), then
    standardised over battles. A battle missing a feature is an error naming it."""
    x = np.zeros((len(battles), len(names)))
    for i, b in enumerate(battles):
        for j, name in enumerate(names):
            va, vb = _style_value(b, name, "a"), _style_value(b, name, "b")
            if va is None or vb is None:
                raise ValueError(
                    f"battle {i}: style feature {name!r} needs {name}_a/{name}_b (on the battle or in conv_metadata)"
                )
            x[i, j] = (va - vb) / (va + vb) if va + vb != 0 else 0.0
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


class StyleControlledBT(_Rater):
    """Bradley–Terry with style covariates, as Chatbot Arena's style control does.

    Logistic regression of A's score (1, 0, a tie as 0.5) on ``+1`` for A's model, ``-1`` for B's and
    the standardised style differences (:func:`style_features`, e.g. ``length``): the model
    coefficients are the ratings with the style effect held fixed, ``style_coef_`` the effect of
    each feature (logit per standard deviation). Needs per-battle features, so it is fitted on
    battles (cost grows with N), by Newton's method with an L2 penalty ``reg/2 * |θ|^2``.
    """

    def __init__(
        self,
        features: Sequence[str] = ("length",),
        base: float = 1000.0,
        scale: float = 400.0,
        reg: float = 1e-4,
        criterion: str | None = "overall",
        anchor: str | None = None,
        max_iter: int = 50,
    ):
        self.features, self.base, self.scale, self.reg = tuple(features), base, scale, reg
        self.criterion, self.anchor, self.max_iter = criterion, anchor, max_iter

    def _solve(self, k: int, ia: np.ndarray, ib: np.ndarray, y: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        n, f = x.shape
        theta = np.zeros(k + f)
        rows = np.arange(n)
        for _ in range(self.max_iter):
            z = theta[ia] - theta[ib] + x @ theta[k:]
            p = 0.5 * (1.0 + np.tanh(0.5 * z))
            r = w * (y - p)
            grad = np.zeros(k + f)
            np.add.at(grad, ia, r)
            np.add.at(grad, ib, -r)
            grad[k:] = x.T @ r
            grad -= self.reg * theta
            if np.max(np.abs(grad)) < 1e-9:
                break
            h = w * p * (1 - p)
            design = np.zeros((n, k + f))
            design[rows, ia] = 1.0
            design[rows, ib] = -1.0
            design[:, k:] = x
            hess = (design * h[:, None]).T @ design + self.reg * np.eye(k + f)
            theta = theta + np.linalg.lstsq(hess, grad, rcond=None)[0]
        return theta

    def _ratings(self, theta: np.ndarray, k: int) -> np.ndarray:
        s = theta[:k] - theta[:k].mean()
        return self.base + self.scale * s / math.log(10.0)

    def fit(self, battles: Iterable[Battle]) -> StyleControlledBT:
        battles = filter_battles(battles, self.criterion)
        if not battles:
            raise ValueError(f"no battles to fit (criterion={self.criterion!r})")
        models, ia, ib, y = _encode(battles)
        x = style_features(battles, self.features)
        self._data = (models, ia, ib, y, x)
        theta = self._solve(len(models), ia, ib, y, x, np.ones(len(y)))
        r = self._anchored(self._ratings(theta, len(models)), models)
        self.models_, self.n_battles_ = models, len(battles)
        self.ratings_ = {m: float(v) for m, v in zip(models, r)}
        self.style_coef_ = {name: float(c) for name, c in zip(self.features, theta[len(models) :])}
        return self

    def bootstrap(
        self, battles: Iterable[Battle], rounds: int = 100, seed: int = 0, ci: float = 0.95, progress: bool = False
    ) -> dict[str, tuple[float, float]]:
        """Percentile CIs from refits with multinomial battle weights (a resample with replacement)."""
        self.fit(battles)
        models, ia, ib, y, x = self._data
        k, n = len(models), len(y)
        rng = np.random.default_rng(seed)
        samples = np.full((rounds, k), np.nan)
        for r in tqdm(range(rounds), desc="bootstrap", disable=not progress):
            w = rng.multinomial(n, np.full(n, 1.0 / n)).astype(float)
            ratings = self._ratings(self._solve(k, ia, ib, y, x, w), k)
            if self.anchor is not None:
                ratings = ratings - ratings[models.index(self.anchor)] + self.base
            samples[r] = ratings
        return self._store_bootstrap(samples, models, ci)


def win_rate(
    battles: Iterable[Battle],
    model: str,
    reference: str,
    ci: float = 0.95,
    seed: int = 0,
    method: Literal["bootstrap", "wilson"] = "bootstrap",
    n_boot: int = 2000,
    criterion: str | None = "overall",
) -> dict[str, float | int]:
    """How often ``model`` beats ``reference`` in their head-to-head battles (either position).

    ``win_rate = (wins + ties / 2) / n``. The default CI is a bootstrap percentile interval over
    battles (resampling the win/tie/loss counts multinomially, which is the same thing and fast);
    it handles the three-valued outcome exactly. ``method="wilson"`` gives the Wilson score
    interval, treating ties as half a success — an approximation that is fine when ties are rare
    and needs no randomness.
    """
    win = tie = loss = 0
    for b in filter_battles(battles, criterion):
        pair = (b["model_a"], b["model_b"])
        if pair == (model, reference):
            mine = {"model_a": "win", "model_b": "loss", "tie": "tie"}[b["winner"]]
        elif pair == (reference, model):
            mine = {"model_b": "win", "model_a": "loss", "tie": "tie"}[b["winner"]]
        else:
            continue
        win += mine == "win"
        tie += mine == "tie"
        loss += mine == "loss"
    n = win + tie + loss
    if n == 0:
        raise ValueError(f"no battles between {model!r} and {reference!r} (criterion={criterion!r})")
    rate = (win + 0.5 * tie) / n
    if method == "wilson":
        lo, hi = wilson_interval(win + 0.5 * tie, n, ci)
    elif method == "bootstrap":
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, [win / n, tie / n, loss / n], size=n_boot)
        rates = (counts[:, 0] + 0.5 * counts[:, 1]) / n
        lo, hi = (float(x) for x in np.percentile(rates, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2]))
    else:
        raise ValueError(f"method={method!r}, expected 'bootstrap' or 'wilson'")
    return {"win": win, "tie": tie, "loss": loss, "win_rate": rate, "ci_low": lo, "ci_high": hi, "n": n}
