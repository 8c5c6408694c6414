"""Annotator quality: gold accuracy, agreement with peers, screening, super raters, spammers.

- *Screening* (InstructGPT): candidates answer gold tasks only, until a sequential test of their
  agreement with the researchers' labels admits them (active) or excludes them; excluded
  people's judgments are left out of aggregation and exports. Two rules: Wald's SPRT on gold
  (``rule="sprt"``), or a *probation* rule (``rule="probation"``) in which an undecided candidate
  keeps working, as an extra judgment beyond the overlap, and is admitted or excluded as evidence
  from gold *and* from peers (Dawid–Skene posteriors of the trusted annotators) accumulates.
- *Spammer flagging*: an active annotator whose gold answers (or, without enough gold, agreement
  with the leave-one-out majority of peers) show chance level is flagged and stops getting tasks.
- *Super raters*: high gold accuracy and peer agreement on enough items (their votes can weigh
  more, and they are the natural reviewers).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from typing import Any, Literal

from pydantic import BaseModel

from alignkit.feedback.aggregate import DawidSkene
from alignkit.feedback.agreement import krippendorff_alpha
from alignkit.feedback.store import STATUSES, FeedbackStore, Judgment

ScreeningRule = Literal["sprt", "probation"]
# The alternatives the probation test mixes over (accuracy against the truth), equally weighted.
ACCURACY_GRID = (0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


class AnnotatorQuality(BaseModel):
    annotator: str
    status: str
    super_rater: bool
    n_judgments: int
    n_gold: int
    n_gold_correct: int
    gold_accuracy: float | None
    n_peer: int
    n_peer_agree: int
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


def annotator_quality(
    store: FeedbackStore, project: str, stage: str | None = None, statuses: Sequence[str] = STATUSES
) -> list[AnnotatorQuality]:
    """One row per annotator who judged anything in the project, of the given ``statuses`` (all by
    default). Peer agreement is measured against active and candidate peers only, so leaving other
    statuses out changes no row that is kept (it only reads fewer judgments)."""
    judgments = store.judgments(project, stage, statuses=statuses)
    people = store.people(project)  # status and super-rater mark in this project
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
        rows.append(
            AnnotatorQuality(
                annotator=name,
                status=a.status,
                super_rater=a.super_rater,
                n_judgments=counts[name],
                n_gold=n_g,
                n_gold_correct=g,
                gold_accuracy=g / n_g if n_g else None,
                n_peer=n_p,
                n_peer_agree=p,
                peer_agreement=p / n_p if n_p else None,
            )
        )
    return sorted(rows, key=lambda r: r.annotator)


def _log_likelihood_ratio(n_correct: int, n: int, threshold: float, chance: float) -> float:
    """log P(answers | accuracy = threshold) - log P(answers | accuracy = chance)."""
    if not 0 < chance < threshold < 1:
        raise ValueError(f"screening needs 0 < chance < threshold < 1, got chance={chance}, threshold={threshold}")
    if not 0 <= n_correct <= n:
        raise ValueError(f"n_correct must be in [0, n_gold], got {n_correct} of {n}")
    return n_correct * math.log(threshold / chance) + (n - n_correct) * math.log((1 - threshold) / (1 - chance))


def screening_decision(
    n_correct: int,
    n_gold: int,
    threshold: float = 0.7,
    chance: float = 0.5,
    false_admit: float = 0.005,
    false_exclude: float = 0.1,
    max_gold: int = 60,
) -> Literal["active", "excluded", "candidate"]:
    """Wald's sequential probability ratio test of a candidate's gold answers.

    Why sequential: a fixed-size test cannot both keep spammers out and keep people in on a small
    gold set (20 items at a 0.7 bar admit a coin-flipper 5.8 % of the time, and exclude many honest
    workers). The SPRT asks for more gold only while the evidence is unclear, so clear cases cost
    few gold items, and its error rates are stated up front.

    H0: the candidate answers at ``chance`` (a spammer); H1: at ``threshold``. After ``n_gold``
    answers with ``n_correct`` right, the log-likelihood ratio is
    ``n_correct * log(p1/p0) + (n_gold - n_correct) * log((1-p1)/(1-p0))``. Admit ("active") once
    it reaches ``log((1-false_exclude)/false_admit)``; exclude once it falls to
    ``log(false_exclude/(1-false_admit))``; otherwise keep asking ("candidate"), and at
    ``max_gold`` answers exclude whoever has not been admitted. Wald's bound then caps the chance
    that a coin-flipper is admitted at ``false_admit / (1 - false_exclude)``; ``false_exclude`` is
    the (approximate) chance that an annotator exactly at ``threshold`` is turned away, more for
    one who needs the cap. The test's indifference point sits between ``chance`` and
    ``threshold`` (0.60 for 0.5 and 0.7).
    """
    if not (0 < false_admit < 1 and 0 < false_exclude < 1):
        raise ValueError(f"error rates must be in (0, 1), got false_admit={false_admit}, false_exclude={false_exclude}")
    llr = _log_likelihood_ratio(n_correct, n_gold, threshold, chance)
    if llr >= math.log((1 - false_exclude) / false_admit):
        return "active"
    if llr <= math.log(false_exclude / (1 - false_admit)) or n_gold >= max_gold:
        return "excluded"
    return "candidate"


def evidence_log_lr(refs: Sequence[float], accuracy: float, chance: float = 0.5) -> float:
    """log P(answers | accuracy) - log P(answers | a content-blind answerer), against a reference.

    ``refs[i]`` is the reference's probability that answer ``i`` is right: 1 or 0 for a gold
    task, and for a regular item the Dawid–Skene posterior of that answer from *other*,
    trusted annotators. Under the alternative the answerer is right with probability
    ``accuracy`` and otherwise picks one of the other options uniformly (``1 / chance - 1`` of
    them), so an answer has probability ``accuracy * q + (1 - accuracy) * (1 - q) * chance / (1 -
    chance)`` when the reference gives it ``q``; under the null it has ``chance``. With q in {0, 1}
    this is exactly the SPRT's per-answer term.
    """
    if not 0 < chance < accuracy < 1:
        raise ValueError(f"the test needs 0 < chance < accuracy < 1, got chance={chance}, accuracy={accuracy}")
    total = 0.0
    for q in refs:
        if not 0 <= q <= 1:
            raise ValueError(f"a reference probability must be in [0, 1], got {q}")
        total += math.log(accuracy * q / chance + (1 - accuracy) * (1 - q) / (1 - chance))
    return total


def probation_decision(
    refs: Sequence[float],
    chance: float = 0.5,
    false_admit: float = 0.005,
    exclude_below: float = 0.6,
    false_exclude: float = 0.1,
    grid: Sequence[float] = ACCURACY_GRID,
) -> Literal["active", "excluded", "probation"]:
    """The probation rule's test of a candidate's evidence so far (gold and peer items, in order).

    Admit once the *mixture* likelihood ratio (Robbins 1970), the mean over the accuracies in
    ``grid`` of ``exp(evidence_log_lr)``, reaches ``1 / false_admit``. Under the null (an answer
    is right with probability ``chance`` whatever the reference says: a uniform random clicker
    always; any content-blind clicker on gold, whose right answer sits in a random position) each
    factor has expectation 1, so the mixture is a nonnegative martingale and Ville's inequality
    (1939) caps the chance it *ever* reaches ``1 / false_admit`` at ``false_admit``: the spammer
    bound, for any number of looks and any length of probation. Mixing over accuracies is what
    lets one test admit a 0.9 annotator in about as many gold answers as Wald's SPRT at 0.7 and a
    0.6 annotator after enough peer items, where a single alternative would be slow for one of them.

    Exclude once the likelihood ratio at ``exclude_below`` falls to ``false_exclude``: the same
    inequality under that alternative caps the chance of excluding an annotator of accuracy
    ``exclude_below`` (against a calibrated reference) at ``false_exclude``, less for better ones.
    Otherwise the candidate stays on probation.
    """
    if not (0 < false_admit < 1 and 0 < false_exclude < 1):
        raise ValueError(f"error rates must be in (0, 1), got false_admit={false_admit}, false_exclude={false_exclude}")
    return _probation_state(
        [evidence_log_lr(refs, a, chance) for a in grid], evidence_log_lr(refs, exclude_below, chance), false_admit, false_exclude
    )


def _probation_state(
    lls: Sequence[float], ll_low: float, false_admit: float, false_exclude: float
) -> Literal["active", "excluded", "probation"]:
    top = max(lls)
    log_mix = top + math.log(sum(math.exp(x - top) for x in lls) / len(lls))
    if log_mix >= -math.log(false_admit):
        return "active"
    if ll_low <= math.log(false_exclude):
        return "excluded"
    return "probation"


def first_probation_decision(
    refs: Sequence[float],
    chance: float = 0.5,
    false_admit: float = 0.005,
    exclude_below: float = 0.6,
    false_exclude: float = 0.1,
    grid: Sequence[float] = ACCURACY_GRID,
) -> tuple[Literal["active", "excluded", "probation"], int]:
    """:func:`probation_decision` after each answer in turn (running sums, one pass): the first
    decision and the number of answers it took (``("probation", len(refs))`` if none)."""
    lls = [0.0] * len(grid)
    ll_low = 0.0
    admit_at, exclude_at = -math.log(false_admit), math.log(false_exclude)
    terms: dict[float, tuple[list[float], float]] = {}  # per-answer terms by reference value (gold: 0 or 1)
    for n, q in enumerate(refs, 1):
        if q not in terms:  # the same floats as evidence_log_lr((q,), a) (0.0 + x == x)
            terms[q] = ([evidence_log_lr((q,), a, chance) for a in grid], evidence_log_lr((q,), exclude_below, chance))
        up, low = terms[q]
        lls = [x + d for x, d in zip(lls, up)]
        ll_low += low
        # The mixture's log is at most max(lls) (a mean of exp is at most the largest), so below the
        # admission bar on max(lls) only the exclusion test can decide: same result, no exp.
        if max(lls) < admit_at:
            if ll_low <= exclude_at:
                return "excluded", n
            continue
        state = _probation_state(lls, ll_low, false_admit, false_exclude)
        if state != "probation":
            return state, n
    return "probation", len(refs)


def peer_references(store: FeedbackStore, project: str, prior_strength: float = 5.0) -> dict[tuple[Hashable, Hashable], float]:
    """(task id, label) -> Dawid–Skene posterior of that label, fitted on the *active* annotators'
    judgments only (with gold answers clamped), so a candidate's own answers never shape the
    reference they are judged against. Items no active annotator judged have no reference."""
    judgments = [j for j in store.judgments(project, statuses=("active",)) if j.label is not None]
    if not judgments:
        return {}
    known: dict[Hashable, Hashable] = {j.task_id: j.gold_label for j in judgments if j.is_gold and j.gold_label is not None}
    ds = DawidSkene(prior_strength=prior_strength).fit([(j.task_id, j.annotator, j.label) for j in judgments], known=known)
    return {(item, lab): p for item, probas in ds.probas_.items() if item not in known for lab, p in probas.items()}


def _screen_probation(
    store: FeedbackStore,
    project: str,
    chance: float,
    false_admit: float,
    false_exclude: float,
    exclude_below: float,
    probation_after: int,
    max_evidence: int | None,
) -> dict[str, str]:
    evidence: dict[str, list[float]] = defaultdict(list)
    n_gold: Counter = Counter()
    refs: dict[tuple[Hashable, Hashable], float] | None = None
    referenced: set[Hashable] = set()
    for j in store.judgments(project, statuses=("candidate", "probation")):  # oldest first
        if j.label is None:
            continue
        if j.is_gold and j.gold_label is not None:
            evidence[j.annotator].append(float(j.label == j.gold_label))
            n_gold[j.annotator] += 1
        elif not j.is_gold:
            if refs is None:
                refs = peer_references(store, project)
                referenced = {t for t, _ in refs}
            if (j.task_id, j.label) in refs:
                evidence[j.annotator].append(refs[(j.task_id, j.label)])
            elif j.task_id in referenced:
                evidence[j.annotator].append(0.0)  # a label no trusted annotator gave: the reference says wrong
    people = store.people(project)
    states: dict[str, str] = {}
    for name, refs_of in evidence.items():
        status: str
        status, _ = first_probation_decision(refs_of, chance, false_admit, exclude_below, false_exclude)
        if status == "probation" and max_evidence is not None and len(refs_of) >= max_evidence:
            status = "excluded"
        states[name] = status
    # Probation is judged against peers; with nobody admitted yet there are none (and a
    # probation annotator would get only the stage's gold spot checks), so candidates keep
    # answering gold until someone is.
    peers = any(a.status == "active" for a in people.values()) or "active" in states.values()
    decided: dict[str, str] = {}
    for name, status in states.items():
        before = people[name].status
        if status == "probation" and before == "candidate" and (n_gold[name] < probation_after or not peers):
            continue  # still answering gold
        if status != before:
            store.set_annotator(name, status=status, project=project)
            decided[name] = status
    return dict(sorted(decided.items()))


def screen(
    store: FeedbackStore,
    project: str,
    threshold: float = 0.7,
    chance: float = 0.5,
    false_admit: float = 0.005,
    false_exclude: float = 0.1,
    max_gold: int = 60,
    rule: ScreeningRule = "sprt",
    exclude_below: float = 0.6,
    probation_after: int = 20,
    max_evidence: int | None = None,
) -> dict[str, str]:
    """Decide every candidate (and, with the probation rule, every annotator on probation) whose
    evidence settles their test; returns annotator -> new status for those it changed.

    ``rule="sprt"``: :func:`screening_decision` on gold answers. Undecided candidates stay
    candidates (they keep getting gold tasks only).

    ``rule="probation"``: :func:`probation_decision` on gold answers and, once on probation, on
    regular items against :func:`peer_references`. A candidate still undecided after
    ``probation_after`` gold answers goes on probation (once someone is active: until then
    there are no peers, and it keeps answering gold): gold spot checks at the stage's rate and
    otherwise regular tasks as *extra* judgments beyond the overlap (never an item's only one;
    see :mod:`alignkit.feedback.store`), admitted or excluded when the evidence settles it, or,
    with ``max_evidence``, excluded when it has not after that many answers. ``threshold`` and
    ``max_gold`` are the SPRT's and unused here. Aggregation counts probation judgments only if
    asked to (``statuses`` of :func:`alignkit.feedback.export.aggregate_stage`); once admitted,
    all of the person's judgments count, probation ones included.

    Either way each person's evidence is replayed oldest first and the test stops at the first
    answer that decides it, so calling this rarely (say, from a nightly ``feedback quality
    --screen``) gives the same decisions as calling it after every answer (for the probation
    rule, given the same peer reference).
    """
    if rule == "probation":
        return _screen_probation(store, project, chance, false_admit, false_exclude, exclude_below, probation_after, max_evidence)
    if rule != "sprt":
        raise ValueError(f"screening rule must be 'sprt' or 'probation', got {rule!r}")
    right: dict[str, list[bool]] = defaultdict(list)
    for j in store.judgments(project, statuses=("candidate",)):  # oldest first
        if j.is_gold and j.gold_label is not None:
            right[j.annotator].append(j.label == j.gold_label)
    decided = {}
    for name, answers in right.items():
        n_correct = 0
        for n, ok in enumerate(answers, 1):
            n_correct += ok
            status = screening_decision(n_correct, n, threshold, chance, false_admit, false_exclude, max_gold)
            if status != "candidate":
                store.set_annotator(name, status=status, project=project)
                decided[name] = status
                break
    return dict(sorted(decided.items()))


def flag_spammers(
    store: FeedbackStore, project: str, threshold: float = 0.7, chance: float = 0.5, false_flag: float = 0.01, min_items: int = 10
) -> list[str]:
    """Flag active annotators whose work shows them at chance level; they stop getting tasks.

    The evidence is their gold answers (screening plus spot checks), or, for someone with fewer
    than ``min_items`` gold answers, their agreement with the majority of trusted peers. It is
    judged with the screening test's likelihood ratio (``threshold`` against ``chance``): flag
    once it falls to ``log(false_flag)``. Why not peers whenever they look bad: agreement with an
    imperfect majority sits below an annotator's accuracy (0.7 accuracy against a 0.85 majority
    agrees 0.64 of the time), so on the simulated crowds (``benchmarks/feedback_quality.py``) a
    peer test alongside gold flagged an informative annotator in 11 of 40 runs.
    """
    flagged = []
    # Active rows need only active and candidate judgments (their peers): probation's extra
    # judgments, often most of a project's rows, are not read.
    for q in annotator_quality(store, project, statuses=("active", "candidate")):
        if q.status != "active":
            continue
        k, n = (q.n_gold_correct, q.n_gold) if q.n_gold >= min_items else (q.n_peer_agree, q.n_peer)
        if n >= min_items and _log_likelihood_ratio(k, n, threshold, chance) <= math.log(false_flag):
            store.set_annotator(q.annotator, status="flagged", project=project)
            flagged.append(q.annotator)
    return flagged


def update_super_raters(
    store: FeedbackStore, project: str, min_gold: int = 10, gold_accuracy: float = 0.9, peer_agreement: float = 0.8
) -> list[str]:
    """Mark annotators above both bars as super raters (and clear the mark for those below)."""
    supers = []
    for q in annotator_quality(store, project):
        ok = (
            q.status == "active"
            and q.n_gold >= min_gold
            and (q.gold_accuracy or 0) >= gold_accuracy
            and (q.peer_agreement is None or q.peer_agreement >= peer_agreement)
        )
        if ok != q.super_rater:
            store.set_annotator(q.annotator, super_rater=ok, project=project)
        if ok:
            supers.append(q.annotator)
    return supers


def agreement_report(store: FeedbackStore, project: str, stage: str | None = None) -> dict[str, Any]:
    """Chance-corrected agreement of active annotators on non-gold tasks of each stage."""

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
