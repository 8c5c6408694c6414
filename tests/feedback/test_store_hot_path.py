"""The store's hot path (next-task and submit as Core statements, merged on PostgreSQL): its
statement counts, its concurrent corner cases (repeats of one submit racing each other), and the
start-up warm-up writing nothing. See benchmarks/README.md, "Annotation web app under load"."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.models import Annotation, Assignment, Task, utcnow
from alignkit.feedback.store import LeaseExpired


def _project(store, n_tasks=4, overlap=2, lease=60.0):
    stage = StageConfig(name="cmp", task_type="compare", overlap=overlap)
    store.create_project("p", ProjectConfig(stages=[stage], max_pending=8, lease_minutes=lease), gold_key="0")
    for i in range(n_tasks):
        pid = store.add_prompt("p", f"question {i}?", status="accepted")
        a, b = store.add_response(pid, f"good answer {i}", model="m1"), store.add_response(pid, f"bad {i}", model="m2")
        store.add_task("p", "cmp", pid, [a, b])


class _Statements:
    """Counts the statements the store sends (BEGIN and COMMIT are not among them)."""

    def __init__(self, store):
        self.sql: list[str] = []
        event.listen(store.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, params, context, executemany):
        if not statement.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE is sent as a statement
            self.sql.append(statement)

    def take(self) -> list[str]:
        out, self.sql = self.sql, []
        return out


def test_next_task_and_submit_use_few_statements_and_show_the_texts(store):
    _project(store, n_tasks=3, overlap=2)
    store.add_annotator("a")
    store.next_task("p", "a")  # the first call also sweeps expired leases (at most once a second)
    count = _Statements(store)
    view = store.next_task("p", "a")
    nxt = count.take()
    assert view.prompt == "question 1?" and view.responses == ["good answer 1", "bad 1"]
    store.submit("a", view.id, {"overall": "A"}, idempotency_key="k")
    sub = count.take()
    if store.is_sqlite:  # in-process: no round trips to save, statements kept apart
        assert len(nxt) == 5 and len(sub) == 4, (nxt, sub)
    else:  # the person; the claim with its texts; the lease (counter + assignment) | the locked row; the writes
        assert len(nxt) == 3 and len(sub) == 2, (nxt, sub)
    with store.read() as s:
        task = s.get_one(Task, view.id)
        assert (task.n_active, task.n_done, task.status) == (1, 1, "open")
        assert s.scalars(select(Assignment.status).where(Assignment.task_id == view.id)).all() == ["submitted"]


def test_a_submit_that_closes_a_task_and_an_expired_sweep_keep_the_counters(store):
    _project(store, n_tasks=2, overlap=2, lease=1.0)
    for name in "abc":
        store.add_annotator(name)
    now = utcnow()
    va, vb = store.next_task("p", "a", now=now), store.next_task("p", "b", now=now)
    assert va.id == vb.id  # the fullest open task first
    store.submit("a", va.id, {"overall": "A"}, now=now)
    store.submit("b", vb.id, {"overall": "A"}, now=now)
    vc = store.next_task("p", "c", now=now)
    assert vc.id != va.id  # closed with 2 of 2
    later = now + timedelta(minutes=5)
    assert store.expire_leases(later) == 1  # c's lease
    with store.read() as s:
        closed, other = s.get_one(Task, va.id), s.get_one(Task, vc.id)
        assert (closed.status, closed.n_active, closed.n_done) == ("done", 2, 2)
        assert (other.status, other.n_active, other.n_done) == ("open", 0, 0)
    with pytest.raises(LeaseExpired):
        store.submit("c", vc.id, {"overall": "A"}, now=later)


@pytest.mark.parametrize("key", ["same-key", None])
def test_racing_repeats_of_one_submit_store_it_once(store, key):
    """Eight threads send the same submit at once. With an idempotency key every one gets the first
    one's annotation id; without, one succeeds and the others are told the assignment is closed.
    On PostgreSQL the losers wait on the task's row lock and must then see the winner's commit."""
    _project(store, n_tasks=1, overlap=2)
    store.add_annotator("a")
    view = store.next_task("p", "a")
    barrier = threading.Barrier(8)
    results: list[object] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        try:
            got: object = store.submit("a", view.id, {"overall": "A"}, idempotency_key=key)
        except LeaseExpired as err:
            got = err
        with lock:
            results.append(got)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [r for r in results if isinstance(r, int)]
    assert len(results) == 8
    if key is None:
        assert len(ids) == 1 and all(isinstance(r, LeaseExpired) for r in results if not isinstance(r, int))
    else:
        assert len(ids) == 8 and len(set(ids)) == 1
    with store.read() as s:
        assert s.scalars(select(Annotation.id).where(Annotation.task_id == view.id)).all() == ids[:1]
        assert s.get_one(Task, view.id).n_done == 1


def test_warm_up_opens_connections_and_writes_nothing(store):
    _project(store, n_tasks=2)
    store.add_annotator("a")
    view = store.next_task("p", "a")
    before = store.snapshot()
    store.warm_up(4)
    assert store.snapshot() == before
    assert store.engine.pool.checkedin() >= 4  # opened together, returned to the pool
    assert store.submit("a", view.id, {"overall": "B"}) > 0  # and the store works as before
