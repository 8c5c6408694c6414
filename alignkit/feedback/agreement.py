"""Inter-annotator agreement: Cohen's kappa, Fleiss' kappa, Krippendorff's alpha (nominal).

Raw percent agreement flatters skewed label sets (two annotators who both say "A" 90% of the
time agree 82% by chance), so every metric here is chance-corrected. Written with numpy only;
the tests check them against hand-worked cases and against scikit-learn / ``krippendorff``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence

import numpy as np


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two annotators who labelled the same items (``a[i]`` and ``b[i]``).

    kappa = (p_o - p_e) / (1 - p_e) with p_e from each annotator's own label marginals.
    Returns 1.0 when both always give the same single label (no disagreement possible).
    """
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs paired labels, got {len(a)} and {len(b)}")
    if not a:
        raise ValueError("cohen_kappa needs at least one item")
    labels = sorted(set(a) | set(b), key=repr)
    idx = {lab: i for i, lab in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for x, y in zip(a, b):
        table[idx[x], idx[y]] += 1
    n = table.sum()
    p_o = np.trace(table) / n
    p_e = float((table.sum(1) / n) @ (table.sum(0) / n))
    if p_e >= 1.0:
        return 1.0
    return float((p_o - p_e) / (1 - p_e))


def fleiss_kappa(counts: np.ndarray | Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa from an items x categories count table (every row sums to the same n raters)."""
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        raise ValueError("fleiss_kappa expects a 2-D items x categories table with at least one row")
    n_raters = table.sum(1)
    if not np.allclose(n_raters, n_raters[0]) or n_raters[0] < 2:
        raise ValueError(
            f"fleiss_kappa needs the same number (>= 2) of raters per item, got row sums {sorted(set(n_raters.tolist()))}"
        )
    n = n_raters[0]
    p_j = table.sum(0) / table.sum()
    p_i = ((table * table).sum(1) - n) / (n * (n - 1))
    p_bar, p_e = p_i.mean(), float((p_j * p_j).sum())
    if p_e >= 1.0:
        return 1.0
    return float((p_bar - p_e) / (1 - p_e))


def counts_table(judgments: Iterable[tuple[Hashable, Hashable, Hashable]]) -> tuple[np.ndarray, list, list]:
    """(item, annotator, label) triples -> items x labels count table, item order, label order."""
    per_item: dict[Hashable, dict[Hashable, int]] = defaultdict(lambda: defaultdict(int))
    for item, _worker, label in judgments:
        per_item[item][label] += 1
    items = list(per_item)
    labels = sorted({lab for c in per_item.values() for lab in c}, key=repr)
    table = np.array([[per_item[i].get(lab, 0) for lab in labels] for i in items], dtype=float)
    return table, items, labels


def krippendorff_alpha(judgments: Iterable[tuple[Hashable, Hashable, Hashable]]) -> float:
    """Krippendorff's alpha for nominal data from (item, annotator, label) triples.

    Handles missing judgments (any number of annotators per item); items with a single judgment
    are not pairable and are dropped, as in Krippendorff (2011). alpha = 1 - D_o / D_e.
    """
    table, _, _ = counts_table(judgments)
    if table.size == 0:
        raise ValueError("krippendorff_alpha needs at least one judgment")
    m_u = table.sum(1)
    table = table[m_u >= 2]
    m_u = m_u[m_u >= 2]
    if table.shape[0] == 0:
        raise ValueError("krippendorff_alpha needs at least one item with two or more judgments")
    # Coincidence matrix: o_ck = sum_u n_uc * (n_uk - [c == k]) / (m_u - 1)
    o = np.einsum("uc,uk->ck", table / (m_u - 1)[:, None], table)
    o -= np.diag((table / (m_u - 1)[:, None]).sum(0))
    n_c = o.sum(1)
    n = n_c.sum()
    d_o = (o.sum() - np.trace(o)) / n
    d_e = (n * n - (n_c * n_c).sum()) / (n * (n - 1))
    if d_e == 0:
        return 1.0
    return float(1 - d_o / d_e)


def pairwise_agreement(judgments: Iterable[tuple[Hashable, Hashable, Hashable]]) -> dict[Hashable, tuple[int, int]]:
    """Per annotator: (agreeing pairs, total pairs) with peers on shared items (raw, for screening)."""
    per_item: dict[Hashable, list[tuple[Hashable, Hashable]]] = defaultdict(list)
    for item, worker, label in judgments:
        per_item[item].append((worker, label))
    out: dict[Hashable, list[int]] = defaultdict(lambda: [0, 0])
    for rows in per_item.values():
        for i, (w, lab) in enumerate(rows):
            for j, (w2, lab2) in enumerate(rows):
                if i != j and w != w2:
                    out[w][0] += int(lab == lab2)
                    out[w][1] += 1
    return {w: (a, t) for w, (a, t) in out.items()}
