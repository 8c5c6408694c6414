"""Turn many noisy judgments into one label per item (scikit-learn ``fit``/``predict`` shape).

Input is always the raw judgments, ``(item, annotator, label)`` triples for categorical answers
and ``(left, right, outcome)`` triples for comparisons, so every estimator can be re-run on the
kept raw data (Open-Assistant's lesson: consensus without raw labels is a dead end).

- :class:`MajorityVote`: optionally weighted; a tie between labels is *reported* (``ties_``) and
  broken by a seeded coin, never by "first seen" (Open-Assistant PR #933).
- :class:`DawidSkene`: EM over one confusion matrix per annotator (Dawid & Skene 1979), so a
  spammer's votes carry ~no weight and a biased annotator's are de-biased.
- :class:`ComparisonAggregator`: Bradley–Terry strengths per response from annotators' comparisons
  and rankings, and the ranking they imply; ties are modelled explicitly, either as half a win each
  way (FastChat) or with Davidson's (1970) tie parameter. (Not to be confused with
  :class:`alignkit.evaluate.ratings.BradleyTerry`, which rates *models* from judged battles.)
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Literal, TypeVar, overload

import numpy as np

Triple = tuple[Hashable, Hashable, Hashable]
_Item = TypeVar("_Item", bound=Hashable)


def _encode(judgments: Iterable[Triple]) -> tuple[list[Hashable], list[Hashable], list[Hashable], np.ndarray]:
    """Items, annotators and labels (sorted) in first-seen order, and the judgments as index rows."""
    rows = list(judgments)
    if not rows:
        raise ValueError("no judgments to aggregate")
    items: dict[Hashable, int] = {}
    workers: dict[Hashable, int] = {}
    labels: dict[Hashable, int] = {}
    for it, w, lab in rows:
        items.setdefault(it, len(items))
        workers.setdefault(w, len(workers))
        labels.setdefault(lab, len(labels))
    # Sort labels for a stable column order independent of arrival order.
    label_list = sorted(labels, key=repr)
    lab_idx = {lab: i for i, lab in enumerate(label_list)}
    codes = np.array([(items[it], workers[w], lab_idx[lab]) for it, w, lab in rows], dtype=np.int64)
    return list(items), list(workers), label_list, codes


class _LabelAggregator(ABC):
    """The read side shared by the label aggregators: ``fit`` fills ``labels_`` and ``probas_``."""

    labels_: dict[Hashable, Hashable]
    probas_: dict[Hashable, dict[Hashable, float]]

    @abstractmethod
    def fit(self, judgments: Iterable[Triple]) -> _LabelAggregator:
        """Fit on ``(item, annotator, label)`` triples; returns ``self``."""

    def predict(self, items: Sequence[Hashable] | None = None) -> dict[Hashable, Hashable]:
        return dict(self.labels_) if items is None else {i: self.labels_[i] for i in items}

    def predict_proba(self, items: Sequence[Hashable] | None = None) -> dict[Hashable, dict[Hashable, float]]:
        return dict(self.probas_) if items is None else {i: self.probas_[i] for i in items}

    def fit_predict(self, judgments: Iterable[Triple]) -> dict[Hashable, Hashable]:
        return self.fit(judgments).predict()


class MajorityVote(_LabelAggregator):
    """The most frequent label per item; ``weights`` (annotator -> weight) for skill-weighted voting."""

    def __init__(self, weights: dict[Hashable, float] | None = None, seed: int = 0) -> None:
        self.weights = weights
        self.seed = seed

    def fit(self, judgments: Iterable[Triple]) -> MajorityVote:
        items, workers, labels, codes = _encode(judgments)
        w = np.array([1.0 if self.weights is None else float(self.weights.get(x, 0.0)) for x in workers])
        votes = np.zeros((len(items), len(labels)))
        np.add.at(votes, (codes[:, 0], codes[:, 2]), w[codes[:, 1]])
        totals = votes.sum(1, keepdims=True)
        probas = np.divide(votes, totals, out=np.full_like(votes, 1.0 / len(labels)), where=totals > 0)
        rng = random.Random(self.seed)
        self.labels_, self.probas_, self.ties_, self.agreement_ = {}, {}, set(), {}
        for i, item in enumerate(items):
            best = np.flatnonzero(np.isclose(votes[i], votes[i].max()))
            if len(best) > 1:
                self.ties_.add(item)
            self.labels_[item] = labels[best[0] if len(best) == 1 else rng.choice(list(best))]
            self.probas_[item] = {lab: float(p) for lab, p in zip(labels, probas[i])}
            self.agreement_[item] = float(probas[i].max())
        self.classes_ = labels
        return self


class DawidSkene(_LabelAggregator):
    """Dawid–Skene EM: latent true label per item, a confusion matrix per annotator.

    Initialised from (soft) majority vote. M-step: priors and row-normalised confusion counts
    (floored at ``eps`` so an unseen cell is not log(0)); E-step: posterior per item in log space.

    Stopping rule: EM raises the (penalised) log-likelihood every round, so it stops when one round
    gains less than ``tol`` per judgment, as crowd-kit's ``DawidSkene`` does with its evidence
    lower bound, or after ``n_iter`` rounds. An earlier rule stopped on the largest change of any
    item's posterior; with a million labels some near-tied item always moved by more than the
    tolerance, so it ran every round without gaining accuracy (issue #19:
    ``benchmarks/ds_convergence.py``).

    Fitted attributes, besides the labels: ``n_iter_`` (rounds run), ``converged_`` (stopped by the
    tolerance, not the cap) and ``log_likelihood_`` (per judgment, one entry per round).
    """

    def __init__(
        self, n_iter: int = 100, tol: float = 1e-5, eps: float = 1e-10, prior_strength: float = 0.0, prior_accuracy: float = 0.7
    ) -> None:
        self.n_iter, self.tol, self.eps = n_iter, tol, eps
        # Dirichlet pseudo-counts per confusion row (MAP estimate): ``prior_strength`` judgments
        # of an annotator right with probability ``prior_accuracy``. With few judgments per
        # annotator the unregularised matrices overfit (K*(K-1) free parameters each); 0 gives
        # the classic maximum-likelihood Dawid–Skene.
        self.prior_strength, self.prior_accuracy = prior_strength, prior_accuracy

    def fit(self, judgments: Iterable[Triple], known: dict[Hashable, Hashable] | None = None) -> DawidSkene:
        """Fit on ``(item, annotator, label)`` triples. ``known``: item -> true label (gold tasks);
        those posteriors are clamped to the known label, which anchors every annotator's
        confusion matrix (semi-supervised Dawid–Skene)."""
        rows = list(judgments)
        known = known or {}
        # Known labels nobody gave still need a column.
        extra: list[Triple] = [(None, None, lab) for lab in set(known.values())]
        items, workers, labels, codes = _encode(rows + extra)
        codes = codes[: len(rows)]
        if extra:
            items, workers = items[:-1] if items[-1] is None else items, workers[:-1] if workers[-1] is None else workers
        n_i, n_w, n_l = len(items), len(workers), len(labels)
        it, wk, lb = codes[:, 0], codes[:, 1], codes[:, 2]
        votes = np.zeros((n_i, n_l))
        np.add.at(votes, (it, lb), 1.0)
        post = votes / votes.sum(1, keepdims=True)
        lab_idx = {lab: i for i, lab in enumerate(labels)}
        clamp = np.array([i for i, item in enumerate(items) if item in known], dtype=int)
        clamp_post = np.zeros((len(clamp), n_l))
        clamp_post[np.arange(len(clamp)), [lab_idx[known[items[i]]] for i in clamp]] = 1.0
        post[clamp] = clamp_post
        off = (1 - self.prior_accuracy) / max(n_l - 1, 1)
        pseudo = self.prior_strength * (np.full((n_l, n_l), off) + np.eye(n_l) * (self.prior_accuracy - off))
        clamp_cols = clamp_post.argmax(1)
        n_judgments = max(len(rows), 1)
        self.n_iter_, self.converged_, self.log_likelihood_ = 0, False, []
        for step in range(self.n_iter):
            # M-step: conf[w, true, given] = sum over w's judgments of post[item, true] * [given]
            priors = np.clip(post.mean(0), self.eps, None)
            conf = np.zeros((n_w, n_l, n_l))
            np.add.at(conf.transpose(0, 2, 1), (wk, lb), post[it])  # a view indexed [w, given, true]
            if self.prior_strength > 0:
                conf += pseudo
            conf = np.clip(conf, self.eps, None)
            conf /= conf.sum(2, keepdims=True)
            # E-step: log p(true = k, judgments of the item) = log prior_k + sum log conf[w, k, given]
            log_lik = np.zeros((n_i, n_l)) + np.log(priors)
            np.add.at(log_lik, it, np.log(conf[wk, :, lb]))
            top = log_lik.max(1, keepdims=True)
            new = np.exp(log_lik - top)
            item_ll = np.log(new.sum(1)) + top[:, 0]  # log p(judgments of the item), summed over labels
            item_ll[clamp] = log_lik[clamp, clamp_cols]  # a known label is observed, not summed over
            objective = float(item_ll.sum())
            if self.prior_strength > 0:  # the Dirichlet prior's log density (MAP), up to a constant
                objective += float((pseudo[None] * np.log(conf)).sum())
            self.log_likelihood_.append(objective / n_judgments)
            new /= new.sum(1, keepdims=True)
            new[clamp] = clamp_post
            post = new
            self.n_iter_ = step + 1
            if step > 0 and self.log_likelihood_[-1] - self.log_likelihood_[-2] < self.tol:
                self.converged_ = True
                break
        self.classes_ = labels
        self.workers_ = workers
        self.priors_ = {lab: float(p) for lab, p in zip(labels, post.mean(0))}
        self.confusions_ = {w: conf[i] for i, w in enumerate(workers)}  # rows: true label, cols: given
        self.probas_ = {item: {lab: float(p) for lab, p in zip(labels, post[i])} for i, item in enumerate(items)}
        self.labels_ = {item: labels[int(np.argmax(post[i]))] for i, item in enumerate(items)}
        self.confidence_ = {item: float(post[i].max()) for i, item in enumerate(items)}
        # Expected accuracy of each annotator under the fitted model (for quality reports).
        self.skills_ = {w: float(np.trace(conf[i] * priors[:, None]) / priors.sum()) for i, w in enumerate(workers)}
        return self


def ranking_to_comparisons(order: Sequence[Hashable]) -> list[tuple[Hashable, Hashable, str]]:
    """A ranking (best first) as every implied pairwise win: ``(better, worse, "A")``."""
    return [(order[i], order[j], "A") for i in range(len(order)) for j in range(i + 1, len(order))]


class ComparisonAggregator:
    """Bradley–Terry strengths of responses from ``(left, right, outcome)``, outcome "A", "B" or "tie".

    ``ties="half"`` counts a tie as half a win for each side and fits by Zermelo/Hunter MM
    (the exact maximum-likelihood estimate). ``ties="davidson"`` fits Davidson's model
    P(i beats j) = p_i / D, P(tie) = nu * sqrt(p_i p_j) / D, D = p_i + p_j + nu * sqrt(p_i p_j),
    with Davidson's fixed-point updates; ``nu_`` is the fitted tie propensity.
    ``alpha`` is a prior: each item plays ``alpha`` drawn games (as half-wins) against a virtual
    opponent of strength 1, so an item that won (or lost) everything keeps a finite score.
    Scores (``scores_``) are log-strengths centred to mean 0.
    """

    def __init__(
        self, ties: Literal["half", "davidson"] = "half", alpha: float = 0.0, n_iter: int = 10_000, tol: float = 1e-10
    ) -> None:
        if ties not in ("half", "davidson"):
            raise ValueError(f"ties must be 'half' or 'davidson', got {ties!r}")
        self.ties, self.alpha, self.n_iter, self.tol = ties, alpha, n_iter, tol

    def fit(self, comparisons: Iterable[tuple[Hashable, Hashable, str]]) -> ComparisonAggregator:
        rows = list(comparisons)
        if not rows:
            raise ValueError("no comparisons to fit")
        index: dict[Hashable, int] = {}
        for a, b, outcome in rows:
            if outcome not in ("A", "B", "tie"):
                raise ValueError(f"comparison outcome must be 'A', 'B' or 'tie', got {outcome!r} for ({a!r}, {b!r})")
            if a == b:
                raise ValueError(f"an item cannot be compared with itself: {a!r}")
            index.setdefault(a, len(index))
            index.setdefault(b, len(index))
        m = len(index)
        wins = np.zeros((m, m))  # wins[i, j]: times i beat j
        ties = np.zeros((m, m))  # symmetric tie counts
        for a, b, outcome in rows:
            i, j = index[a], index[b]
            if outcome == "A":
                wins[i, j] += 1
            elif outcome == "B":
                wins[j, i] += 1
            else:
                ties[i, j] += 1
                ties[j, i] += 1
        self.items_ = list(index)
        if self.ties == "half":
            wins = wins + ties / 2
            ties = np.zeros_like(ties)
        if self.alpha > 0:  # prior: alpha half-wins against a virtual opponent of strength 1
            wins = np.pad(wins, ((0, 1), (0, 1)))
            ties = np.pad(ties, ((0, 1), (0, 1)))
            wins[:m, m] += self.alpha / 2
            wins[m, :m] += self.alpha / 2
        k = wins.shape[0]
        games = wins + wins.T + ties
        score = wins.sum(1) + ties.sum(1) / 2  # W_i + T_i / 2
        # Without alpha an undefeated or winless item has no finite MLE; its score then drifts to
        # a large magnitude within n_iter, which still orders it correctly.
        p = np.ones(k)
        total_ties = ties.sum() / 2
        nu = 1.0 if self.ties == "davidson" and total_ties > 0 else 0.0
        self.n_iter_ = 0
        for step in range(self.n_iter):
            self.n_iter_ = step + 1
            root = np.sqrt(np.outer(p, p))
            denom = p[:, None] + p[None, :] + nu * root
            np.fill_diagonal(denom, 1.0)
            # d/dp_i of sum n_ij log D_ij, times p_i: n_ij (p_i + nu/2 sqrt(p_i p_j)) / D_ij
            grad = (games * (1 + nu / 2 * np.sqrt(p[None, :] / p[:, None])) / denom).sum(1)
            new_p = np.where(grad > 0, score / np.where(grad > 0, grad, 1), p)
            new_p = np.clip(new_p, 1e-300, None)
            # Fix the scale: with alpha the virtual opponent is the reference, else the geometric mean.
            new_p = new_p / new_p[-1] if self.alpha > 0 else new_p / math.exp(np.log(new_p).mean())
            if nu > 0:
                root = np.sqrt(np.outer(new_p, new_p))
                denom = new_p[:, None] + new_p[None, :] + nu * root
                np.fill_diagonal(denom, 1.0)
                nu = float(total_ties / ((games * root / denom).sum() / 2))
            delta = float(np.abs(np.log(new_p) - np.log(p)).max())
            p = new_p
            if delta < self.tol:
                break
        logp = np.log(p[:m])
        logp -= logp.mean()
        self.scores_ = {item: float(s) for item, s in zip(self.items_, logp)}
        self.nu_ = nu
        return self

    def predict_proba(self, pairs: Sequence[tuple[Hashable, Hashable]]) -> np.ndarray:
        """Rows of (P(left wins), P(tie), P(right wins)) for each pair under the fitted model."""
        out = []
        for a, b in pairs:
            pa, pb = math.exp(self.scores_[a]), math.exp(self.scores_[b])
            t = self.nu_ * math.sqrt(pa * pb)
            d = pa + pb + t
            out.append((pa / d, t / d, pb / d))
        return np.array(out)

    def predict(self, pairs: Sequence[tuple[Hashable, Hashable]]) -> list[str]:
        """The likelier winner of each pair as "A" or "B" ("tie" only for equal scores)."""
        return [
            "tie" if math.isclose(self.scores_[a], self.scores_[b]) else "A" if self.scores_[a] > self.scores_[b] else "B"
            for a, b in pairs
        ]

    @overload
    def rank(self, items: None = None) -> list[Hashable]: ...
    @overload
    def rank(self, items: Sequence[_Item]) -> list[_Item]: ...

    def rank(self, items: Sequence[Any] | None = None) -> list[Any]:
        """Items best first by fitted score (ties broken by the given order)."""
        pool = list(self.items_ if items is None else items)
        return sorted(pool, key=lambda x: -self.scores_[x])


def per_annotator(judgments: Iterable[Triple]) -> dict[Hashable, list[tuple[Hashable, Hashable]]]:
    """Group triples by annotator: annotator -> [(item, label)]."""
    out: dict[Hashable, list[tuple[Hashable, Hashable]]] = defaultdict(list)
    for item, worker, label in judgments:
        out[worker].append((item, label))
    return out
