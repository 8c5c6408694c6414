"""Screening, spammer flagging, super raters and the agreement report, with scripted annotators."""

import random

import pytest

from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.quality import (
    _log_likelihood_ratio,
    agreement_report,
    annotator_quality,
    flag_spammers,
    screen,
    screening_decision,
    update_super_raters,
)


def _project(store, n_gold=12, n_items=20, gold_rate=0.0):
    stage = StageConfig(name="cmp", task_type="compare", overlap=3, gold_rate=gold_rate)
    store.create_project("p", ProjectConfig(stages=[stage], max_pending=100), gold_key="0")  # the seed-0 placement
    for i in range(n_gold + n_items):
        pid = store.add_prompt("p", f"q{i}", status="accepted")
        a, b = store.add_response(pid, f"a{i}"), store.add_response(pid, f"b{i}")
        store.add_task("p", "cmp", pid, [a, b], gold={"overall": "A"} if i < n_gold else None)


def _answer_all(store, name, accuracy, seed):
    """Scripted worker: right (truth is always "A") with probability ``accuracy``."""
    rng = random.Random(seed)
    while (v := store.next_task("p", name)) is not None:
        store.submit(name, v.id, {"overall": "A" if rng.random() < accuracy else "B"})


def _take_turns(store, accuracy):
    """Scripted workers answer in turns (so everybody gets both gold and regular tasks) until no
    task is left; each is right (truth is always "A") with its probability in ``accuracy``."""
    rngs = {name: random.Random(i) for i, name in enumerate(accuracy)}
    busy = True
    while busy:
        busy = False
        for name, acc in accuracy.items():
            if (v := store.next_task("p", name)) is not None:
                store.submit(name, v.id, {"overall": "A" if rngs[name].random() < acc else "B"})
                busy = True


def test_screening_admits_good_and_excludes_spammers(store):
    _project(store, n_gold=20)
    people = {"expert": 1.0, "good": 0.9, "spam": 0.0, "coin": 0.3}
    for name, acc in people.items():
        store.add_annotator(name, status="candidate")
        _answer_all(store, name, acc, seed=1)  # candidates get only the 20 gold tasks
    rows = {q.annotator: q for q in annotator_quality(store, "p")}
    assert rows["expert"].n_gold == 20 and rows["expert"].gold_accuracy == 1.0
    assert rows["spam"].gold_accuracy == 0.0
    decided = screen(store, "p", threshold=0.8, max_gold=20)
    assert decided == {"expert": "active", "good": "active", "spam": "excluded", "coin": "excluded"}
    assert {a.name: a.status for a in store.people("p").values()} == decided


def test_screening_waits_for_enough_gold(store):
    _project(store, n_gold=3)
    store.add_annotator("new", status="candidate")
    _answer_all(store, "new", 1.0, seed=0)
    assert screen(store, "p") == {}  # 3 right answers are not yet evidence enough either way
    assert store.person("p", "new").status == "candidate"


def test_screening_decision_boundaries_by_hand():
    # threshold 0.7 vs chance 0.5: a right answer adds ln(1.4) = 0.33647, a wrong one ln(0.6) = -0.51083;
    # admit at ln(0.9 / 0.005) = 5.19296, exclude at ln(0.1 / 0.995) = -2.29757.
    assert screening_decision(16, 16) == "active"  # 16 * 0.33647 = 5.3836
    assert screening_decision(15, 15) == "candidate"  # 5.0471
    assert screening_decision(19, 21) == "active"  # 6.3930 - 1.0217 = 5.3713
    assert screening_decision(18, 20) == "candidate"  # 6.0565 - 1.0217 = 5.0348
    assert screening_decision(0, 4) == "candidate"  # -2.0433
    assert screening_decision(0, 5) == "excluded"  # -2.5541
    assert screening_decision(3, 9) == "candidate"  # 1.0094 - 3.0650 = -2.0556
    assert screening_decision(3, 10) == "excluded"  # 1.0094 - 3.5758 = -2.5664
    assert screening_decision(40, 60) == "excluded"  # 13.459 - 10.217 = 3.24 < 5.19 and the cap is reached
    assert screening_decision(40, 59, max_gold=60) == "candidate"
    with pytest.raises(ValueError, match="chance < threshold"):
        screening_decision(1, 2, threshold=0.4)
    with pytest.raises(ValueError, match="n_correct"):
        screening_decision(3, 2)


def _admit_probability(p: float, **kw) -> float:
    """Exact P(admitted) for an annotator right with probability p, by dynamic programming over
    (answers so far, right so far): each undecided state moves on by one more gold answer."""
    max_gold = kw.get("max_gold", 60)
    states = {0: 1.0}  # n_correct -> probability, among the undecided after n answers
    admitted = 0.0
    for n in range(1, max_gold + 1):
        nxt: dict[int, float] = {}
        for c, pr in states.items():
            for c2, q in ((c + 1, p), (c, 1 - p)):
                d = screening_decision(c2, n, **kw)
                if d == "active":
                    admitted += pr * q
                elif d == "candidate":
                    nxt[c2] = nxt.get(c2, 0.0) + pr * q
        states = nxt
    assert not states  # everyone is decided by max_gold
    return admitted


def test_screening_error_rates_hold_exactly():
    # Wald's bound: a coin-flipper is admitted with probability <= false_admit / (1 - false_exclude).
    assert _admit_probability(0.5) <= 0.005 / 0.9
    assert _admit_probability(0.5, false_admit=0.05) <= 0.05 / 0.9
    assert _admit_probability(0.5, false_admit=0.05) > _admit_probability(0.5)  # the knob does something
    assert _admit_probability(0.9) > 0.99 and _admit_probability(0.8) > 0.9
    assert _admit_probability(0.3) < 1e-6


def test_spammer_flagging_and_super_raters(store):
    _project(store, n_gold=14, n_items=16, gold_rate=0.5)
    for name in ("ace", "ok1", "ok2", "spam"):
        store.add_annotator(name)
    _take_turns(store, {"ace": 1.0, "ok1": 0.8, "ok2": 0.8, "spam": 0.0})
    rows = {q.annotator: q for q in annotator_quality(store, "p")}
    assert rows["ace"].peer_agreement > rows["spam"].peer_agreement
    assert flag_spammers(store, "p", min_items=8) == ["spam"]
    assert update_super_raters(store, "p", min_gold=8, gold_accuracy=0.95, peer_agreement=0.5) == ["ace"]
    assert [a.name for a in store.people("p").values() if a.super_rater] == ["ace"]


def test_agreement_report(store):
    _project(store, n_gold=0, n_items=6)
    for name in ("a", "b", "c"):
        store.add_annotator(name)
        _answer_all(store, name, 1.0, 0)  # everyone says "A" everywhere: no disagreement
    rep = agreement_report(store, "p")
    assert rep["cmp"]["judgments"] == 18 and rep["cmp"]["items"] == 6 and rep["cmp"]["krippendorff_alpha"] == 1.0


def test_screening_replays_answers_in_order(store):
    # Five wrong answers first (LLR -2.5541 <= -2.2976) exclude the candidate at that moment, even
    # though 20 right answers follow and the totals alone (20 of 25, LLR 4.17) would be undecided:
    # the decision must not depend on when screen() happens to be called.
    _project(store, n_gold=25)
    store.add_annotator("late", status="candidate")
    n = 0
    while (v := store.next_task("p", "late")) is not None:
        store.submit("late", v.id, {"overall": "B" if n < 5 else "A"})
        n += 1
    assert n == 25
    assert screening_decision(20, 25) == "candidate"
    assert screen(store, "p") == {"late": "excluded"}


def test_flagging_without_gold_uses_peers_and_the_likelihood_ratio(store):
    _project(store, n_gold=0, n_items=24)
    accuracy = {"spam": 0.0, "ok1": 0.9, "ok2": 0.9, "ok3": 0.9}
    for name in accuracy:
        store.add_annotator(name)
    _take_turns(store, accuracy)
    rows = {q.annotator: q for q in annotator_quality(store, "p")}
    assert rows["spam"].n_gold == 0 and rows["spam"].n_peer >= 10
    assert flag_spammers(store, "p", min_items=30) == []  # not enough evidence yet
    assert flag_spammers(store, "p") == ["spam"]
    # By hand: 3 agreements in 10 give LLR 3 ln 1.4 + 7 ln 0.6 = -2.566 > ln 0.01 = -4.605 (not yet);
    # 0 in 10 give 10 ln 0.6 = -5.108 (flag).
    assert _log_likelihood_ratio(3, 10, 0.7, 0.5) == pytest.approx(-2.5664, abs=1e-4)
    assert _log_likelihood_ratio(0, 10, 0.7, 0.5) == pytest.approx(-5.1083, abs=1e-4)
