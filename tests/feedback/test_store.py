"""The store: schema via migrations, assignment rules, gold, leases, dynamic overlap, bad input."""

from datetime import timedelta

import pytest

from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.models import utcnow
from alignkit.feedback.schemas import InvalidAnswer
from alignkit.feedback.store import FeedbackStore, NotAllowed, NotAssigned, TooManyPending, UnknownAnnotator, UnknownTask


def _compare_project(
    store, n_tasks=4, overlap=2, max_overlap=None, gold=0, gold_rate=0.0, max_pending=8, lease=60.0, threshold=1.0
):
    stage = StageConfig(
        name="cmp",
        task_type="compare",
        overlap=overlap,
        max_overlap=max_overlap,
        gold_rate=gold_rate,
        agreement_threshold=threshold,
    )
    # A fixed gold key keeps the gold-rate assertions reproducible (a real project draws a secret one).
    store.create_project("p", ProjectConfig(stages=[stage], max_pending=max_pending, lease_minutes=lease), gold_key="0")
    ids = []
    for i in range(n_tasks + gold):
        pid = store.add_prompt("p", f"question {i}?", status="accepted")
        a, b = store.add_response(pid, f"good answer {i}", model="m1"), store.add_response(pid, f"bad {i}", model="m2")
        ids.append(store.add_task("p", "cmp", pid, [a, b], gold={"overall": "A"} if i >= n_tasks else None))
    return ids


def test_init_runs_migrations_idempotently(db_url):
    from alignkit.feedback.db import current_revision

    s1 = FeedbackStore(db_url)
    assert current_revision(s1.engine) == "0004"
    s1.create_project("p")
    s1.close()
    s2 = FeedbackStore(db_url)  # upgrading again is a no-op and keeps the data
    assert s2.counts()["projects"] == 1
    s2.close()


def test_sqlite_pragmas(tmp_path):
    s = FeedbackStore(str(tmp_path / "x.db"))
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_overlap_and_no_repeats(store):
    _compare_project(store, n_tasks=3, overlap=2)
    for name in "abcd":
        store.add_annotator(name)
    seen = {n: [] for n in "abcd"}
    for name in "abcd":
        while (view := store.next_task("p", name)) is not None:
            seen[name].append(view.id)
    for name, ids in seen.items():
        assert len(ids) == len(set(ids)), f"{name} got a task twice"
    per_task = {}
    for ids in seen.values():
        for t in ids:
            per_task[t] = per_task.get(t, 0) + 1
    assert per_task == {t: 2 for t in per_task} and len(per_task) == 3


def test_count_tasks_counts_only_regular_tasks_by_status(store):
    _compare_project(store, n_tasks=3, overlap=1, gold=2)
    store.add_annotator("a")
    assert store.count_tasks("p") == 3 and store.count_tasks("p", "cmp", status="done") == 0
    view = store.next_task("p", "a")
    store.submit("a", view.id, {"overall": "A"})  # overlap 1: this task is done
    assert store.count_tasks("p", "cmp", status="done") == 1
    assert store.count_tasks("p", "cmp", status="done") == sum(t.status == "done" for t in store.tasks("p", "cmp"))


def test_own_output_is_never_reviewed(store):
    stage = StageConfig(name="rev", task_type="review_completion", overlap=2, role="annotator")
    store.create_project("p", ProjectConfig(stages=[stage]))
    author = store.add_annotator("author")
    store.add_annotator("other")
    pid = store.add_prompt("p", "q?")
    rid = store.add_response(pid, "answer by author")
    store.add_task("p", "rev", pid, [rid], author_ids=[author])
    assert store.next_task("p", "author") is None
    assert store.next_task("p", "other") is not None


def test_reviewer_role_required(store):
    stage = StageConfig(name="rev", task_type="review_completion", overlap=1, role="reviewer")
    store.create_project("p", ProjectConfig(stages=[stage]))
    store.add_annotator("worker")
    store.add_annotator("boss", role="reviewer")
    pid = store.add_prompt("p", "q?")
    store.add_task("p", "rev", pid, [store.add_response(pid, "r")])
    assert store.next_task("p", "worker") is None
    assert store.next_task("p", "boss") is not None


def test_max_pending_and_lease_expiry(store):
    _compare_project(store, n_tasks=5, overlap=1, max_pending=2, lease=1.0)
    store.add_annotator("a")
    store.add_annotator("b")
    v1, v2 = store.next_task("p", "a"), store.next_task("p", "a")
    with pytest.raises(TooManyPending, match="limit 2"):
        store.next_task("p", "a")
    assert [v.id for v in store.pending("a")] == [v1.id, v2.id]
    # b cannot get a's leased tasks now, but can once the leases ran out
    later = utcnow() + timedelta(minutes=2)
    got_b = store.next_task("p", "b", now=utcnow())
    assert got_b.id not in (v1.id, v2.id)
    store.submit("b", got_b.id, {"overall": "A"})
    taken = []
    while (v := store.next_task("p", "b", now=later)) is not None:
        taken.append(v.id)
        store.submit("b", v.id, {"overall": "B"}, now=later)
    assert v1.id in taken and v2.id in taken
    with pytest.raises(NotAssigned, match="expired"):
        store.submit("a", v1.id, {"overall": "A"})


def test_drafts_are_kept_server_side(store):
    _compare_project(store, n_tasks=1, overlap=1)
    store.add_annotator("a")
    v = store.next_task("p", "a")
    store.save_draft("a", v.id, {"overall": "A", "note": "half done"})
    assert store.pending("a")[0].draft == {"overall": "A", "note": "half done"}


def test_gold_is_mixed_in_at_rate_and_looks_the_same(store):
    ids = _compare_project(store, n_tasks=60, overlap=1, gold=60, gold_rate=0.25)
    gold_ids = set(ids[60:])
    store.add_annotator("a")
    served = []
    for _ in range(40):
        v = store.next_task("p", "a")
        served.append(v)
        store.submit("a", v.id, {"overall": "A"})
    n_gold = sum(v.id in gold_ids for v in served)
    assert 4 <= n_gold <= 18  # 25% of 40 = 10, binomial sd ~2.7
    g = next(v for v in served if v.id in gold_ids)
    r = next(v for v in served if v.id not in gold_ids)
    assert set(vars(g)) == set(vars(r)) and g.payload == r.payload and g.type == r.type
    assert "gold" not in repr(g).lower()


def test_candidates_see_only_gold_and_excluded_see_nothing(store):
    ids = _compare_project(store, n_tasks=3, overlap=1, gold=2)
    store.add_annotator("c", status="candidate")
    got = [store.next_task("p", "c").id, store.next_task("p", "c").id]
    assert sorted(got) == ids[3:]
    assert store.next_task("p", "c") is None
    store.set_annotator("c", status="excluded")
    with pytest.raises(NotAllowed, match="excluded"):
        store.next_task("p", "c")


def test_dynamic_overlap_asks_more_when_answers_disagree(store):
    _compare_project(store, n_tasks=2, overlap=2, max_overlap=4)
    for n in "abcde":
        store.add_annotator(n)
    t_agree, t_split = [t.id for t in store.tasks("p")]
    for n, agree, split in [("a", "A", "A"), ("b", "A", "B")]:
        for t, ans in ((t_agree, agree), (t_split, split)):
            store.next_task("p", n)
            store.submit(n, t, {"overall": ans})
    tasks = {t.id: t for t in store.tasks("p")}
    assert tasks[t_agree].status == "done" and tasks[t_agree].overlap == 2
    assert tasks[t_split].status == "open" and tasks[t_split].overlap == 3
    v = store.next_task("p", "c")
    assert v.id == t_split
    store.submit("c", v.id, {"overall": "tie"})  # 1-1-1: still split -> a 4th
    assert store.tasks("p")[1].overlap == 4
    v = store.next_task("p", "d")
    store.submit("d", v.id, {"overall": "A"})
    t = store.tasks("p")[1]
    assert t.status == "done" and t.n_done == 4  # the ceiling stops it
    assert store.next_task("p", "e") is None


def test_flagging_discounts_judgments_and_reopens_tasks(store):
    _compare_project(store, n_tasks=1, overlap=1)
    store.add_annotator("spam")
    store.add_annotator("good")
    v = store.next_task("p", "spam")
    store.submit("spam", v.id, {"overall": "B"})
    assert store.tasks("p")[0].status == "done"
    store.set_annotator("spam", status="flagged")
    assert store.tasks("p")[0].status == "open"
    v = store.next_task("p", "good")
    store.submit("good", v.id, {"overall": "A"})
    assert [j.annotator for j in store.judgments("p")] == ["good"]  # active only
    assert len(store.judgments("p", statuses=("active", "flagged"))) == 2  # raw judgment kept


@pytest.mark.parametrize("case", ["unknown_task", "not_assigned", "malformed", "unknown_annotator", "twice"])
def test_bad_submissions_change_nothing(store, case):
    _compare_project(store, n_tasks=2, overlap=2)
    store.add_annotator("a")
    store.add_annotator("b")
    v = store.next_task("p", "a")
    if case == "twice":
        store.submit("a", v.id, {"overall": "A"})
    before = store.snapshot()
    call = {
        "unknown_task": (UnknownTask, "no task with id 999", lambda: store.submit("a", 999, {"overall": "A"})),
        "not_assigned": (NotAssigned, "not assigned to annotator 'b'", lambda: store.submit("b", v.id, {"overall": "A"})),
        "malformed": (
            InvalidAnswer,
            "criteria.brand_tone",
            lambda: store.submit("a", v.id, {"overall": "A", "criteria": {"brand_tone": "A"}}),
        ),
        "unknown_annotator": (UnknownAnnotator, "no annotator 'zed'", lambda: store.submit("zed", v.id, {"overall": "A"})),
        "twice": (NotAssigned, "submitted, not pending", lambda: store.submit("a", v.id, {"overall": "B"})),
    }[case]
    with pytest.raises(call[0], match=call[1]):
        call[2]()
    assert store.snapshot() == before


def test_prelabels_route_only_low_confidence_to_people(store):
    stage = StageConfig(name="bin", task_type="binary", overlap=1, auto_label_confidence=0.9)
    store.create_project("p", ProjectConfig(stages=[stage]))
    store.add_annotator("a")
    pid = store.add_prompt("p", "q?")
    sure = store.add_task("p", "bin", pid, [store.add_response(pid, "r1")], prelabel={"good": True}, confidence=0.97)
    unsure = store.add_task("p", "bin", pid, [store.add_response(pid, "r2")], prelabel={"good": False}, confidence=0.6)
    v = store.next_task("p", "a")
    assert v.id == unsure and store.next_task("p", "a") is None
    assert {t.id: t.status for t in store.tasks("p")} == {sure: "auto", unsure: "open"}
    with pytest.raises(InvalidAnswer, match="good"):
        store.add_task("p", "bin", pid, [], prelabel={"fine": True}, confidence=0.5)


def test_migrations_match_the_models(db_url):
    """The shipped migration creates exactly the schema the models describe (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from alignkit.feedback.models import Base

    s = FeedbackStore(db_url)
    with s.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    s.close()
    assert diff == []
