"""Store rules found missing under load and attack (issue 19): lease expiry at submit, flagged
annotators on leased gold, screening of CLI-added annotators, idempotent submits, unpredictable
gold placement, and no ordinary twins of gold rows on import."""

import json
import random
from datetime import timedelta

import pytest

from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.models import utcnow
from alignkit.feedback.store import FeedbackError, NotAllowed, NotAssigned
from alignkit.feedback.workflow import advance, import_items


def _project(store, n_tasks=4, gold=0, gold_rate=0.0, lease=60.0, seed=0, gold_key=None):
    stage = StageConfig(name="cmp", task_type="compare", overlap=1, gold_rate=gold_rate)
    config = ProjectConfig(stages=[stage], lease_minutes=lease, seed=seed, max_pending=8)
    store.create_project("p", config, gold_key=gold_key)
    ids = []
    for i in range(n_tasks + gold):
        pid = store.add_prompt("p", f"question {i}?", status="accepted")
        a, b = store.add_response(pid, f"good {i}", model="m1"), store.add_response(pid, f"bad {i}", model="m2")
        ids.append(store.add_task("p", "cmp", pid, [a, b], gold={"overall": "A"} if i >= n_tasks else None))
    return ids


def test_submit_after_lease_expiry_is_refused_even_if_nobody_expired_it(store):
    _project(store, n_tasks=2, lease=1.0)
    store.add_annotator("a")
    v = store.next_task("p", "a")
    before = store.snapshot()
    with pytest.raises(NotAssigned, match="expired"):
        store.submit("a", v.id, {"overall": "A"}, now=utcnow() + timedelta(minutes=2))
    assert store.snapshot() == before  # refused: nothing written
    store.submit("a", v.id, {"overall": "A"})  # within the lease it is taken


def test_flagged_annotator_cannot_submit_gold_already_leased(store):
    ids = _project(store, n_tasks=0, gold=2)
    store.add_annotator("c", status="candidate")
    v = store.next_task("p", "c")
    assert v.id in ids
    store.set_annotator("c", status="flagged")
    with pytest.raises(NotAllowed, match="flagged"):
        store.submit("c", v.id, {"overall": "A"})
    assert store.judgments("p", statuses=("candidate", "active", "excluded", "flagged")) == []


def test_idempotency_key_answers_a_retry_with_the_first_result(store):
    _project(store, n_tasks=2)
    store.add_annotator("a")
    v = store.next_task("p", "a")
    first = store.submit("a", v.id, {"overall": "A"}, idempotency_key="k1")
    counts = store.counts()
    assert store.submit("a", v.id, {"overall": "B"}, idempotency_key="k1") == first
    assert store.counts() == counts
    assert [j.label for j in store.judgments("p")] == ["A"]
    with pytest.raises(NotAssigned):  # without the key a second submit is still refused
        store.submit("a", v.id, {"overall": "A"})
    w = store.next_task("p", "a")
    with pytest.raises(FeedbackError, match="used for task"):
        store.submit("a", w.id, {"overall": "A"}, idempotency_key="k1")


def test_gold_placement_is_not_predictable_from_seed_id_and_count(store):
    """The old rule was ``random.Random(f"{seed}:{id}:{count}").random() < gold_rate``: a predictor
    that knows all three called every gold task. With the secret key its hits are at the gold rate.
    The key is fixed here (one the predictor does not know) so the counts are the same every run;
    a random key made the served-gold count a binomial draw that once fell outside the band."""
    rate, n_serve = 0.3, 240
    ids = _project(store, n_tasks=n_serve, gold=n_serve, gold_rate=rate, seed=0, gold_key="a secret the annotator never sees")
    gold_ids = set(ids[n_serve:])
    aid = store.add_annotator("a")
    predicted, hits, n_gold = 0, 0, 0
    for n_seen in range(n_serve):
        guess = random.Random(f"0:{aid}:{n_seen}").random() < rate
        v = store.next_task("p", "a")
        store.submit("a", v.id, {"overall": "A"})
        is_gold = v.id in gold_ids
        n_gold += is_gold
        predicted += guess
        hits += guess and is_gold
    assert 0.2 < n_gold / n_serve < 0.4  # gold still served at its rate
    precision = hits / predicted
    # With no information the precision is the gold rate (0.3; binomial sd over ~72 guesses ~0.054).
    assert precision < 0.47, (hits, predicted)


def test_gold_key_fixed_by_the_caller_reproduces_placement(tmp_path):
    from alignkit.feedback.store import FeedbackStore

    served = []
    for run in range(2):
        store = FeedbackStore(str(tmp_path / f"r{run}.db"))
        stage = StageConfig(name="cmp", task_type="compare", overlap=1, gold_rate=0.3)
        store.create_project("p", ProjectConfig(stages=[stage]), gold_key="fixed")
        for i in range(40):
            pid = store.add_prompt("p", f"q{i}", status="accepted")
            a, b = store.add_response(pid, "x"), store.add_response(pid, "y")
            store.add_task("p", "cmp", pid, [a, b], gold={"overall": "A"} if i >= 20 else None)
        store.add_annotator("a")
        order = []
        for _ in range(20):
            v = store.next_task("p", "a")
            store.submit("a", v.id, {"overall": "A"})
            order.append(v.id)
        served.append(order)
        store.close()
    assert served[0] == served[1]


def test_import_with_stage_gives_gold_rows_no_ordinary_twin(store):
    store.create_project("p", ProjectConfig(stages=[StageConfig(name="compare", task_type="compare", input="response_pairs")]))
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "gold": i < 3} for i in range(6)]
    counts = import_items(store, "p", rows, stage="compare")
    assert counts["gold"] == 3
    assert advance(store, "p") == {"compare": 0}
    tasks = store.tasks("p", include_gold=True)
    assert len(tasks) == 6
    assert len({t.prompt_id for t in tasks}) == 6  # one task per row, gold or not


def test_cli_added_annotators_are_screened_when_the_project_has_gold(tmp_path):
    from typer.testing import CliRunner

    from alignkit.cli import app
    from alignkit.feedback.store import FeedbackStore

    db = str(tmp_path / "f.db")
    src = tmp_path / "rows.jsonl"
    src.write_text(
        "".join(json.dumps({"prompt": f"q{i}", "chosen": f"g{i}", "rejected": f"b{i}", "gold": i < 4}) + "\n" for i in range(8))
    )
    run = CliRunner().invoke
    assert run(app, ["feedback", "init", "--db", db, "--project", "p"]).exit_code == 0
    r = run(
        app,
        [
            "feedback",
            "import",
            "--db",
            db,
            "--project",
            "p",
            "--input",
            str(src),
            "--stage",
            "compare",
            "--annotators",
            "ann1,rev1:reviewer,ann2:annotator:active",
        ],
    )
    assert r.exit_code == 0, r.output
    status = {n: p.status for n, p in FeedbackStore(db).people("p").items()}
    assert status == {"ann1": "candidate", "rev1": "active", "ann2": "active"}


def test_skip_returns_the_slot_to_others_but_not_to_the_skipper(store):
    ids = _project(store, n_tasks=1)
    store.add_annotator("a")
    store.add_annotator("b")
    v = store.next_task("p", "a")
    store.skip("a", v.id)
    assert store.next_task("p", "a") is None
    assert store.next_task("p", "b").id == v.id == ids[0]
    with pytest.raises(NotAssigned):
        store.submit("a", v.id, {"overall": "A"})


def test_compare_answer_takes_both_bad_strength_and_rationale():
    from alignkit.feedback.schemas import InvalidAnswer, validate_answer

    full = {"overall": "tie", "both_bad": True, "strength": 2, "rationale": "neither answers the question"}
    assert validate_answer("compare", full) == {**full, "criteria": {}, "harms": []}
    assert validate_answer("compare", {"overall": "A"}) == {"overall": "A", "criteria": {}, "harms": []}  # unchanged
    with pytest.raises(InvalidAnswer, match="strength"):
        validate_answer("compare", {"overall": "A", "strength": 5})


def test_screening_state_is_per_project_in_assignment_submit_and_judgments(store):
    """Admitted in p, a candidate in q (gold only there); flagged in q, still working in p; q's
    judgments leave out the flagged person, p's keep them."""
    _project(store, n_tasks=2)
    store.create_project("q", ProjectConfig(stages=[StageConfig(name="cmp", task_type="compare", overlap=1)]))
    q_ids = []
    for i in range(3):
        pid = store.add_prompt("q", f"q{i}", status="accepted")
        rs = [store.add_response(pid, "x"), store.add_response(pid, "y")]
        q_ids.append(store.add_task("q", "cmp", pid, rs, gold={"overall": "A"} if i == 0 else None))
    store.add_annotator("a", status="active", project="p")
    store.add_annotator("a", status="candidate", exist_ok=True, project="q")
    assert (store.person("p", "a").status, store.person("q", "a").status) == ("active", "candidate")
    v = store.next_task("q", "a")
    assert v.id == q_ids[0] and store.next_task("q", "a") is None  # candidates: gold only
    store.submit("a", v.id, {"overall": "A"})
    store.set_annotator("a", status="active", project="q")
    w = store.next_task("q", "a")
    store.set_annotator("a", status="flagged", project="q")
    with pytest.raises(NotAllowed):
        store.submit("a", w.id, {"overall": "A"})
    with pytest.raises(NotAllowed):
        store.next_task("q", "a")
    u = store.next_task("p", "a")
    store.submit("a", u.id, {"overall": "B"})
    assert [j.task_id for j in store.judgments("p")] == [u.id]
    assert store.judgments("q") == [] and len(store.judgments("q", statuses=("flagged",))) == 1
    # the flag returned q's slot and nothing of p's
    assert [t.n_active for t in store.tasks("q") if t.id == w.id] == [0]
    assert [t.n_done for t in store.tasks("p") if t.id == u.id] == [1]
