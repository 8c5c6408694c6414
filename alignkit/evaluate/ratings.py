"""Ratings from pairwise battles: online Elo, Bradley–Terry (maximum likelihood), win rates.

A *battle* is a plain dict ``{"model_a": str, "model_b": str, "winner": "model_a"|"model_b"|"tie"}``
with an optional ``"criterion"`` (battles without one count as ``"overall"``). Plain dicts keep
battles trivially JSON-serialisable and compatible with FastChat's battle tables.

Ties follow FastChat: a tie counts as half a win for each side. For Elo this is the actual score
0.5; for Bradley–Terry it adds half a win to each direction of the pair's win matrix (so ties pull
two ratings together without being dropped). ``ties="ignore"`` drops them instead.

Ratings are reported on the Elo scale: ``rating = base + scale * s / ln(10)`` where ``s`` is the
natural-log strength, so ``P(i beats j) = 1 / (1 + 10 ** ((r_j - r_i) / scale))`` for both models.

Estimators have the scikit-learn shape: configure in ``__init__``, ``fit(battles)`` returns self,
results in trailing-underscore attributes (``ratings_``), ``predict_proba(a, b)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from alignkit.evaluate.stats import wilson_interval

Battle = dict[str, Any]
WINNERS = ("model_a", "model_b", "tie")


def _check_battles(battles: Iterable[Battle]) -> list[Battle]:
    """Validate battle records; name the offending index and field in the error."""
    out = []
    for i, b in enumerate(battles):
        if not isinstance(b, dict):
            raise ValueError(f"battle {i}: expected a dict with model_a, model_b, winner; got {type(b).__name__}")
        for field in ("model_a", "model_b", "winner"):
            if field not in b:
                raise ValueError(f"battle {i}: missing field {field!r} (expected model_a, model_b, winner)")
        if b["winner"] not in WINNERS:
            raise ValueError(f"battle {i}: winner={b['winner']!r}, expected one of {WINNERS}")
        if b["model_a"] == b["model_b"]:
            raise ValueError(f"battle {i}: model_a and model_b are both {b['model_a']!r}")
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


def _encode(battles: list[Battle]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Models (sorted) and per-battle index of A, index of B and A's score (1, 0 or 0.5)."""
    models = sorted({b["model_a"] for b in battles} | {b["model_b"] for b in battles})
    index = {m: i for i, m in enumerate(models)}
    ia = np.array([index[b["model_a"]] for b in battles], dtype=np.int64)
    ib = np.array([index[b["model_b"]] for b in battles], dtype=np.int64)
    score = np.array([{"model_a": 1.0, "model_b": 0.0, "tie": 0.5}[b["winner"]] for b in battles])
    return models, ia, ib, score


def _expected(ra: float | np.ndarray, rb: float | np.ndarray, scale: float) -> Any:
    return 1.0 / (1.0 + 10.0 ** ((rb - ra) / scale))


class _Rater:
    """Shared pieces: criterion filtering, ``predict_proba``, ``bootstrap``."""

    base: float
    scale: float
    criterion: str | None
    anchor: str | None
    ratings_: dict[str, float]

    def _ratings_from_arrays(
        self, n_models: int, ia: np.ndarray, ib: np.ndarray, score: np.ndarray, order: np.ndarray
    ) -> np.ndarray:
        raise NotImplementedError

    def _anchored(self, ratings: np.ndarray, models: list[str]) -> np.ndarray:
        """Shift so the anchor model sits at ``base`` (ratings are only defined up to a shift)."""
        if self.anchor is None:
            return ratings
        if self.anchor not in models:
            raise ValueError(f"anchor model {self.anchor!r} has no battles; models are {models}")
        return ratings - ratings[models.index(self.anchor)] + self.base

    def fit(self, battles: Iterable[Battle]) -> _Rater:
        battles = filter_battles(battles, self.criterion)
        if not battles:
            raise ValueError(f"no battles to fit (criterion={self.criterion!r})")
        models, ia, ib, score = _encode(battles)
        r = self._ratings_from_arrays(len(models), ia, ib, score, np.arange(len(battles)))
        r = self._anchored(r, models)
        self.models_ = models
        self.ratings_ = {m: float(x) for m, x in zip(models, r)}
        self.n_battles_ = len(battles)
        return self

    def predict_proba(self, model_a: str, model_b: str) -> float:
        """P(model_a beats model_b) under the fitted ratings (a tie counts as half a win)."""
        for m in (model_a, model_b):
            if m not in self.ratings_:
                raise KeyError(f"unknown model {m!r}; fitted models: {sorted(self.ratings_)}")
        return float(_expected(self.ratings_[model_a], self.ratings_[model_b], self.scale))

    def bootstrap(
        self, battles: Iterable[Battle], rounds: int = 100, seed: int = 0, ci: float = 0.95, progress: bool = False
    ) -> dict[str, tuple[float, float]]:
        """Percentile CIs from refitting on battles resampled with replacement (FastChat: 100 rounds).

        Also fits on the full data (``ratings_``) and keeps every round in ``bootstrap_ratings_``
        (rounds x models; NaN where a model drew no battle in that resample). Resampling also
        shuffles the order, which is what gives online Elo its (order-dependent) spread.
        """
        battles = filter_battles(battles, self.criterion)
        self.fit(battles)
        models, ia, ib, score = _encode(battles)
        n, k = len(battles), len(models)
        rng = np.random.default_rng(seed)
        samples = np.full((rounds, k), np.nan)
        for r in tqdm(range(rounds), desc="bootstrap", disable=not progress):
            idx = rng.integers(0, n, size=n)
            present = np.zeros(k, dtype=bool)
            present[ia[idx]] = True
            present[ib[idx]] = True
            ratings = self._ratings_from_arrays(k, ia[idx], ib[idx], score[idx], np.arange(n))
            if self.anchor is not None:
                a = models.index(self.anchor)
                if not present[a]:
                    continue
                ratings = ratings - ratings[a] + self.base
            samples[r, present] = ratings[present]
        lo_q, hi_q = 100 * (1 - ci) / 2, 100 * (1 + ci) / 2
        self.bootstrap_ratings_ = samples
        self.ci_ = {
            m: (float(np.nanpercentile(samples[:, j], lo_q)), float(np.nanpercentile(samples[:, j], hi_q)))
            for j, m in enumerate(models)
        }
        return self.ci_


class EloRating(_Rater):
    """Online Elo as in FastChat's ``compute_elo``: one pass over battles in the given order.

    Each battle moves both ratings by ``k * (S - E)``, where ``S`` is A's score (1, 0.5 for a tie,
    0) and ``E = 1 / (1 + 10 ** ((r_b - r_a) / scale))``. Small ``k`` (FastChat uses 4) keeps the
    ladder stable but makes it depend on order; use it as a cross-check of Bradley–Terry.
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

    def _ratings_from_arrays(self, n_models, ia, ib, score, order):
        r = [float(self.base)] * n_models
        k, scale = self.k, self.scale
        # A plain Python loop over Python floats: each update depends on the previous one, so it
        # cannot be vectorised, and float arithmetic is ~10x faster than numpy scalar indexing.
        for a, b, sa in zip(ia[order].tolist(), ib[order].tolist(), score[order].tolist()):
            e = 1.0 / (1.0 + 10.0 ** ((r[b] - r[a]) / scale))
            r[a] += k * (sa - e)
            r[b] += k * ((1.0 - sa) - (1.0 - e))
        return np.array(r)


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


class BradleyTerry(_Rater):
    """Bradley–Terry ratings by (lightly regularised) maximum likelihood.

    ``P(i beats j) = sigmoid(s_i - s_j)``; FastChat fits the same model by logistic regression.
    ``ties="half"`` (FastChat) counts a tie as half a win each way; ``"ignore"`` drops ties.

    ``reg`` is an L2 penalty ``reg/2 * |s|^2`` on the natural-log strengths. Without it a model that
    never lost would get an infinite rating and disconnected groups of models an arbitrary offset;
    the default 1e-4 is negligible next to the curvature one battle adds (up to 0.25), so ratings
    match the plain maximum-likelihood fit wherever that is finite. It is ``2 * alpha`` in
    ``choix.opt_pairwise`` terms (choix penalises ``alpha * |s|^2``). Ratings are centred on ``base``.
    """

    def __init__(
        self,
        base: float = 1000.0,
        scale: float = 400.0,
        ties: Literal["half", "ignore"] = "half",
        reg: float = 1e-4,
        criterion: str | None = "overall",
        anchor: str | None = None,
        max_iter: int = 100,
    ):
        if ties not in ("half", "ignore"):
            raise ValueError(f"ties={ties!r}, expected 'half' or 'ignore'")
        if reg < 0:
            raise ValueError(f"reg={reg} must be >= 0")
        self.base, self.scale, self.ties, self.reg = base, scale, ties, reg
        self.criterion, self.anchor, self.max_iter = criterion, anchor, max_iter

    def _ratings_from_arrays(self, n_models, ia, ib, score, order):
        wins = np.zeros((n_models, n_models))
        keep = np.ones(len(score), dtype=bool) if self.ties == "half" else score != 0.5
        np.add.at(wins, (ia[keep], ib[keep]), score[keep])
        np.add.at(wins, (ib[keep], ia[keep]), 1.0 - score[keep])
        s = _bt_strengths(wins, self.reg, self.max_iter)
        return self.base + self.scale * s / math.log(10.0)


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
