"""Screening, spammer flagging, super raters and the agreement report, with scripted annotators."""

import random

from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.quality import agreement_report, annotator_quality, flag_spammers, screen, update_super_raters


def _project(store, n_gold=12, n_items=20, gold_rate=0.0):
    stage = StageConfig(name="cmp", task_type="compare", overlap=3, gold_rate=gold_rate)
    store.create_project("p", ProjectConfig(stages=[stage], max_pending=100))
    for i in range(n_gold + n_items):
        pid = store.add_prompt("p", f"q{i}", status="accepted")
        a, b = store.add_response(pid, f"a{i}"), store.add_response(pid, f"b{i}")
        store.add_task("p", "cmp", pid, [a, b], gold={"overall": "A"} if i < n_gold else None)


def _answer_all(store, name, accuracy, seed):
    """Scripted worker: right (truth is always "A") with probability ``accuracy``."""
    rng = random.Random(seed)
    while (v := store.next_task("p", name)) is not None:
        store.submit(name, v.id, {"overall": "A" if rng.random() < accuracy else "B"})


def test_screening_admits_good_and_excludes_spammers(store):
    _project(store)
    people = {"expert": 1.0, "good": 0.9, "spam": 0.0, "coin": 0.3}
    for name, acc in people.items():
        store.add_annotator(name, status="candidate")
        _answer_all(store, name, acc, seed=1)  # candidates get only the 12 gold tasks
    rows = {q.annotator: q for q in annotator_quality(store, "p")}
    assert rows["expert"].n_gold == 12 and rows["expert"].gold_accuracy == 1.0
    assert rows["spam"].gold_accuracy == 0.0
    decided = screen(store, "p", threshold=0.7, min_gold=10)
    assert decided == {"expert": "active", "good": "active", "spam": "excluded", "coin": "excluded"}


def test_screening_waits_for_enough_gold(store):
    _project(store, n_gold=3)
    store.add_annotator("new", status="candidate")
    _answer_all(store, "new", 1.0, seed=0)
    assert screen(store, "p", min_gold=5) == {}


def test_spammer_flagging_and_super_raters(store):
    _project(store, n_gold=14, n_items=16, gold_rate=0.5)
    for name in ("ace", "ok1", "ok2", "spam"):
        store.add_annotator(name)
    accuracy = {"ace": 1.0, "ok1": 0.8, "ok2": 0.8, "spam": 0.0}
    rngs = {name: random.Random(i) for i, name in enumerate(accuracy)}
    busy = True
    while busy:  # take turns, so everybody gets both gold and regular tasks
        busy = False
        for name, acc in accuracy.items():
            if (v := store.next_task("p", name)) is not None:
                store.submit(name, v.id, {"overall": "A" if rngs[name].random() < acc else "B"})
                busy = True
    rows = {q.annotator: q for q in annotator_quality(store, "p")}
    assert rows["ace"].peer_agreement > rows["spam"].peer_agreement
    assert flag_spammers(store, "p", min_items=8, max_accuracy=0.6) == ["spam"]
    assert update_super_raters(store, "p", min_gold=8, gold_accuracy=0.95, peer_agreement=0.5) == ["ace"]
    assert [a.name for a in store.annotators() if a.super_rater] == ["ace"]


def test_agreement_report(store):
    _project(store, n_gold=0, n_items=6)
    for name in ("a", "b", "c"):
        store.add_annotator(name)
        _answer_all(store, name, 1.0, 0)  # everyone says "A" everywhere: no disagreement
    rep = agreement_report(store, "p")
    assert rep["cmp"]["judgments"] == 18 and rep["cmp"]["items"] == 6 and rep["cmp"]["krippendorff_alpha"] == 1.0
