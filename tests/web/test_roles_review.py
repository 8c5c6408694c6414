"""Roles and screening are per project (enforced by the server, 403 otherwise), and the admins'
review queue for flagged items: annotators report a task, the store flags tasks closed without a
majority, an admin dismisses / reopens / decides them, and aggregation takes the decision."""

from __future__ import annotations

from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.export import aggregate_stage
from alignkit.web.accounts import create_account, invite
from tests.web.conftest import PASSWORD


def _second_project(store, gold: bool = True) -> list[int]:
    """Project q: a compare stage with gold, and a reviewer-only binary stage."""
    stages = [
        StageConfig(name="cmp", task_type="compare", overlap=1),
        StageConfig(name="check", task_type="binary", overlap=1, role="reviewer"),
    ]
    store.create_project("q", ProjectConfig(stages=stages))
    ids = []
    for i in range(3):
        pid = store.add_prompt("q", f"q{i}", status="accepted")
        a, b = store.add_response(pid, "x"), store.add_response(pid, "y")
        ids.append(store.add_task("q", "cmp", pid, [a, b], gold={"overall": "A"} if gold and i == 0 else None))
    pid = store.add_prompt("q", "check me", status="accepted")
    ids.append(store.add_task("q", "check", pid, [store.add_response(pid, "z")]))
    return ids


def _join(web, token: str, name: str):
    c = web["client"](name)  # signed in; accepting adds the project to this account
    r = c.post("/api/v1/join", json={"token": token})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


def test_screening_and_roles_do_not_carry_over_between_projects(web):
    store = web["store"]
    ids = _second_project(store)
    create_account(store, "rev", PASSWORD, project="p", role="reviewer")  # a reviewer in p
    _join(web, invite(store, "q", "annotator"), "ann1")  # ann1: active in p, joins q (which has gold)
    rev = _join(web, invite(store, "q", "annotator"), "rev")  # rev: an annotator in q
    a1 = web["client"]("ann1")
    assert a1.get("/api/v1/me").json()["status"] == {"p": "active", "q": "candidate"}
    # a candidate in q sees only q's gold, though admitted in p
    assert a1.post("/api/v1/projects/q/next", json={"stage": "cmp"}).json()["task"]["id"] == ids[0]
    assert a1.post("/api/v1/projects/q/next", json={"stage": "cmp"}).json()["task"] is None
    # reviewer in p, annotator in q: q's reviewer stage gives nothing; admins of q can change that
    assert rev.post("/api/v1/projects/q/next", json={"stage": "check"}).json()["task"] is None
    lead = web["client"]("lead")
    change = {"role": "reviewer", "status": "active"}  # (joined q as an annotator, so a screening candidate there)
    assert lead.post("/api/v1/projects/q/admin/annotators/rev", json=change).status_code == 200
    rev = web["client"]("rev")  # a new session loads the new role
    assert rev.post("/api/v1/projects/q/next", json={"stage": "check"}).json()["task"]["id"] == ids[3]
    # excluding ann1 in q leaves them working in p
    assert lead.post("/api/v1/projects/q/admin/annotators/ann1", json={"status": "excluded"}).status_code == 200
    assert a1.post("/api/v1/projects/q/next", json={}).status_code == 403
    assert a1.post("/api/v1/projects/p/next", json={}).json()["task"] is not None
    assert store.person("p", "ann1").status == "active" and store.person("q", "ann1").status == "excluded"


def test_a_project_admin_is_admin_of_that_project_only(web):
    store = web["store"]
    _second_project(store)
    create_account(store, "boss", PASSWORD, project="q", role="admin")
    boss = web["client"]("boss")
    assert boss.get("/api/v1/projects/q/admin/progress").status_code == 200
    assert boss.get("/api/v1/projects/q/admin/review").status_code == 200
    before = store.snapshot()
    for method, url, body in [
        ("get", "/api/v1/projects/p/admin/progress", None),
        ("get", "/api/v1/projects/p/admin/review", None),
        ("post", "/api/v1/projects/p/admin/review/1", {"action": "dismiss"}),
        ("post", "/api/v1/projects/p/admin/annotators/ann1", {"status": "excluded"}),
        ("post", "/api/v1/projects/p/next", {}),
        ("post", "/api/v1/projects", {"name": "mine"}),
    ]:
        r = getattr(boss, method)(url, json=body) if body is not None else getattr(boss, method)(url)
        assert r.status_code == 403, (url, r.status_code)
    # an admin of q cannot change the role of someone who is not in q
    assert boss.post("/api/v1/projects/q/admin/annotators/ann1", json={"role": "admin"}).status_code == 404
    assert store.snapshot() == before


def test_review_queue_report_dismiss_reopen_adjudicate(web):
    store, a, b = web["store"], web["client"]("ann1"), web["client"]("ann2")
    lead = web["client"]("lead")
    t1 = a.post("/api/v1/projects/p/next", json={}).json()["task"]
    # only the lease holder may report it, and it needs a reason
    assert b.post(f"/api/v1/projects/p/tasks/{t1['id']}/flag", json={"reason": "x"}).status_code == 403
    assert a.post(f"/api/v1/projects/p/tasks/{t1['id']}/flag", json={"reason": ""}).status_code == 422
    r = a.post(f"/api/v1/projects/p/tasks/{t1['id']}/flag", json={"reason": "response B is cut off <b>"})
    assert r.status_code == 200
    assert a.get(f"/api/v1/projects/p/tasks/{t1['id']}").status_code == 403  # it left ann1's queue
    # annotators never see the queue (it holds everyone's answers and gold)
    assert a.get("/api/v1/projects/p/admin/review").status_code == 403
    [f] = lead.get("/api/v1/projects/p/admin/review").json()
    assert f["kind"] == "report" and f["reported_by"] == "ann1" and f["task"]["id"] == t1["id"]
    assert f["reason"] == "response B is cut off <b>"
    page = lead.get("/p/p/admin").text
    assert "response B is cut off &lt;b&gt;" in page and "cut off <b>" not in page  # escaped on the admin page
    assert lead.post(f"/api/v1/projects/p/admin/review/{f['id']}", json={"action": "dismiss"}).status_code == 200
    assert lead.post(f"/api/v1/projects/p/admin/review/{f['id']}", json={"action": "dismiss"}).status_code == 409
    assert lead.get("/api/v1/projects/p/admin/review").json() == []

    # a task closed without a majority (overlap 2, one A and one B) is flagged by the store
    t2 = a.post("/api/v1/projects/p/next", json={}).json()["task"]
    assert b.post("/api/v1/projects/p/next", json={}).json()["task"]["id"] == t2["id"]  # fullest task first
    assert b.post(f"/api/v1/projects/p/tasks/{t2['id']}/submit", json={"answer": {"overall": "A"}}).status_code == 200
    assert a.post(f"/api/v1/projects/p/tasks/{t2['id']}/submit", json={"answer": {"overall": "B"}}).status_code == 200
    [f2] = lead.get("/api/v1/projects/p/admin/review").json()
    assert f2["kind"] == "disagreement" and f2["task"]["id"] == t2["id"] and "no majority" in f2["reason"]
    assert sorted(j["answer"]["overall"] for j in f2["judgments"]) == ["A", "B"]
    # a bad decision is refused (422) and changes nothing; a good one becomes the task's label
    before = store.snapshot()
    bad = {"action": "adjudicate", "answer": {"overall": "C"}}
    assert lead.post(f"/api/v1/projects/p/admin/review/{f2['id']}", json=bad).status_code == 422
    assert store.snapshot() == before
    good = {"action": "adjudicate", "answer": {"overall": "B"}}
    assert lead.post(f"/api/v1/projects/p/admin/review/{f2['id']}", json=good).status_code == 200
    agg = aggregate_stage(store, "p", "cmp", "majority")[t2["id"]]
    assert agg.label == "B" and agg.source == "adjudicated" and agg.confidence == 1.0 and agg.agreement == 0.5

    # reopen: the task asks one more person
    t3 = a.post("/api/v1/projects/p/next", json={}).json()["task"]
    a.post(f"/api/v1/projects/p/tasks/{t3['id']}/flag", json={"reason": "unclear"})
    [f3] = lead.get("/api/v1/projects/p/admin/review").json()
    overlap = next(t.overlap for t in store.tasks("p") if t.id == t3["id"])
    assert lead.post(f"/api/v1/projects/p/admin/review/{f3['id']}", json={"action": "reopen"}).status_code == 200
    assert next(t.overlap for t in store.tasks("p") if t.id == t3["id"]) == overlap + 1
    done = lead.get("/api/v1/projects/p/admin/review?status=all").json()
    assert [x["status"] for x in done] == ["dismissed", "adjudicated", "reopened"]
