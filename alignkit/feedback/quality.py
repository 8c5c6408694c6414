"""Annotator quality: gold accuracy, agreement with peers, screening, super raters, spammers.

- *Screening* (InstructGPT): candidates answer gold tasks only; those whose agreement with the
  researchers' labels reaches ``threshold`` (on at least ``min_gold`` items) become active, the
  rest are excluded, and their judgments are left out of aggregation and exports.
- *Spammer flagging*: an active annotator whose gold accuracy (or, without gold, agreement with
  the leave-one-out majority of peers) falls to near chance is flagged and stops getting tasks.
- *Super raters*: high gold accuracy and peer agreement on enough items (their votes can weigh
  more, and they are the natural reviewers).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from pydantic import BaseModel

from alignkit.feedback.store import FeedbackStore, Judgment


class AnnotatorQuality(BaseModel):
    annotator: str
    status: str
    super_rater: bool
    n_judgments: int
    n_gold: int
    gold_accuracy: float | None
    n_peer: int
    peer_agreement: float | None  # agreement with the leave-one-out majority of peers


def _peer_stats(judgments: list[Judgment], trusted: set[str]) -> dict[str, tuple[int, int]]:
    """Agreement with the majority of *trusted* peers (excluded/flagged people are no yardstick)."""
    per_task: dict[int, list[Judgment]] = defaultdict(list)
    for j in judgments:
        if not j.is_gold and j.label is not None:
            per_task[j.task_id].append(j)
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for rows in per_task.values():
        for j in rows:
            others = Counter(o.label for o in rows if o.annotator != j.annotator and o.annotator in trusted)
            if not others:
                continue
            top = others.most_common(1)[0][1]
            winners = {lab for lab, c in others.items() if c == top}
            if len(winners) > 1:
                continue  # peers split evenly: no majority to agree with
            out[j.annotator][0] += int(j.label in winners)
            out[j.annotator][1] += 1
    return {a: (x, n) for a, (x, n) in out.items()}


def annotator_quality(store: FeedbackStore, project: str, stage: str | None = None) -> list[AnnotatorQuality]:
    """One row per annotator who judged anything in the project (any status)."""
    judgments = store.judgments(project, stage, statuses=("candidate", "active", "excluded", "flagged"))
    people = {a.name: a for a in store.annotators()}
    peers = _peer_stats(judgments, {n for n, a in people.items() if a.status in ("active", "candidate")})
    gold: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    counts: Counter = Counter()
    for j in judgments:
        counts[j.annotator] += 1
        if j.is_gold and j.gold_label is not None:
            gold[j.annotator][0] += int(j.label == j.gold_label)
            gold[j.annotator][1] += 1
    rows = []
    for name in counts:
        g, n_g = gold.get(name, (0, 0))
        p, n_p = peers.get(name, (0, 0))
        a = people[name]
        rows.append(AnnotatorQuality(annotator=name, status=a.status, super_rater=a.super_rater, n_judgments=counts[name],
                                     n_gold=n_g, gold_accuracy=g / n_g if n_g else None,
                                     n_peer=n_p, peer_agreement=p / n_p if n_p else None))
    return sorted(rows, key=lambda r: r.annotator)


def screen(store: FeedbackStore, project: str, threshold: float = 0.7, min_gold: int = 5) -> dict[str, str]:
    """Admit candidates whose gold accuracy >= ``threshold`` (on >= ``min_gold`` items), exclude the rest.

    Candidates with fewer gold answers stay candidates. Returns annotator -> new status.
    """
    decided = {}
    for q in annotator_quality(store, project):
        if q.status != "candidate" or q.n_gold < min_gold:
            continue
        status = "active" if (q.gold_accuracy or 0.0) >= threshold else "excluded"
        store.set_annotator(q.annotator, status=status)
        decided[q.annotator] = status
    return decided


def flag_spammers(store: FeedbackStore, project: str, min_items: int = 10, max_accuracy: float = 0.6) -> list[str]:
    """Flag active annotators at ~chance: gold accuracy (else peer agreement) below ``max_accuracy``."""
    flagged = []
    for q in annotator_quality(store, project):
        if q.status != "active":
            continue
        if q.n_gold >= min_items:
            bad = q.gold_accuracy < max_accuracy
        elif q.n_peer >= min_items:
            bad = q.peer_agreement < max_accuracy
        else:
            continue
        if bad:
            store.set_annotator(q.annotator, status="flagged")
            flagged.append(q.annotator)
    return flagged


def update_super_raters(store: FeedbackStore, project: str, min_gold: int = 10, gold_accuracy: float = 0.9,
                        peer_agreement: float = 0.8) -> list[str]:
    """Mark annotators above both bars as super raters (and clear the mark for those below)."""
    supers = []
    for q in annotator_quality(store, project):
        ok = q.status == "active" and q.n_gold >= min_gold and (q.gold_accuracy or 0) >= gold_accuracy \
            and (q.peer_agreement is None or q.peer_agreement >= peer_agreement)
        if ok != q.super_rater:
            store.set_annotator(q.annotator, super_rater=ok)
        if ok:
            supers.append(q.annotator)
    return supers


def agreement_report(store: FeedbackStore, project: str, stage: str | None = None) -> dict[str, Any]:
    """Chance-corrected agreement of active annotators on non-gold tasks of each stage."""
    from alignkit.feedback.agreement import krippendorff_alpha

    by_stage: dict[str, list[tuple]] = defaultdict(list)
    for j in store.judgments(project, stage, include_gold=False, statuses=("active",)):
        if j.label is not None:
            by_stage[j.stage].append((j.task_id, j.annotator, j.label))
    out = {}
    for name, triples in by_stage.items():
        try:
            alpha = krippendorff_alpha(triples)
        except ValueError:
            alpha = None
        out[name] = {"judgments": len(triples), "items": len({t[0] for t in triples}), "krippendorff_alpha": alpha}
    return out
