"""The JSON API: the annotator flow (lease, draft, submit with idempotency key, skip, progress),
invitations, admin endpoints running the CLI's code, and what never reaches an annotator."""

from __future__ import annotations

import json

from tests.web.conftest import PASSWORD


def test_openapi_lists_the_versioned_api(web):
    spec = web["client"]().get("/api/v1/openapi.json").json()
    paths = set(spec["paths"])
    for p in (
        "/api/v1/projects/{project}/next",
        "/api/v1/projects/{project}/tasks/{task_id}/submit",
        "/api/v1/projects/{project}/tasks/{task_id}/draft",
        "/api/v1/projects/{project}/tasks/{task_id}/skip",
        "/api/v1/projects/{project}/progress",
        "/api/v1/projects/{project}/admin/export",
    ):
        assert p in paths


def test_annotator_flow_lease_draft_submit_skip_progress(web):
    c = web["client"]("ann1")
    t = c.post("/api/v1/projects/p/next", json={}).json()["task"]
    assert t["type"] == "compare" and t["prompt"].startswith("question") and len(t["responses"]) == 2
    assert c.put(f"/api/v1/projects/p/tasks/{t['id']}/draft", json={"draft": {"overall": "A"}}).status_code == 200
    assert c.get(f"/api/v1/projects/p/tasks/{t['id']}").json()["draft"] == {"overall": "A"}
    bad = c.post(f"/api/v1/projects/p/tasks/{t['id']}/submit", json={"answer": {"overall": "C"}})
    assert bad.status_code == 422
    h = {"Idempotency-Key": "abc-1"}
    r1 = c.post(f"/api/v1/projects/p/tasks/{t['id']}/submit", json={"answer": {"overall": "A"}}, headers=h)
    r2 = c.post(f"/api/v1/projects/p/tasks/{t['id']}/submit", json={"answer": {"overall": "A"}}, headers=h)
    assert r1.status_code == r2.status_code == 200 and r1.json() == r2.json()
    assert len(web["store"].judgments("p")) == 1
    again = c.post(f"/api/v1/projects/p/tasks/{t['id']}/submit", json={"answer": {"overall": "A"}})
    assert again.status_code == 409  # the assignment is no longer open
    t2 = c.post("/api/v1/projects/p/next", json={}).json()["task"]
    assert c.post(f"/api/v1/projects/p/tasks/{t2['id']}/skip").status_code == 200
    prog = c.get("/api/v1/projects/p/progress").json()
    assert prog["submitted"] == 1 and prog["skipped"] == 1 and prog["pending"] == 0
    assert prog["stages"]["cmp"]["total"] == 6
    # a skipped task is not offered to the same person again, but is to others
    seen = set()
    while (n := c.post("/api/v1/projects/p/next", json={}).json()["task"]) is not None:
        seen.add(n["id"])
        c.post(f"/api/v1/projects/p/tasks/{n['id']}/submit", json={"answer": {"overall": "B"}})
    assert t2["id"] not in seen
    other = web["client"]("ann2")
    got = []
    while (n := other.post("/api/v1/projects/p/next", json={}).json()["task"]) is not None:
        got.append(n["id"])
        other.post(f"/api/v1/projects/p/tasks/{n['id']}/submit", json={"answer": {"overall": "A"}})
    assert t2["id"] in got


def test_api_token_for_scripts_needs_no_csrf(web):
    c = web["client"]("ann1")
    token = c.post("/api/v1/me/token").json()["token"]
    script = web["client"]()
    script.headers["Authorization"] = f"Bearer {token}"
    assert script.get("/api/v1/me").json()["name"] == "ann1"
    assert script.post("/api/v1/projects/p/next", json={}).status_code == 200
    script.headers["Authorization"] = "Bearer wrong"
    assert script.get("/api/v1/me").status_code == 401


def test_invitation_signs_up_a_screened_candidate_and_is_single_use(web):
    lead = web["client"]("lead")
    inv = lead.post("/api/v1/projects/p/admin/invitations", json={"role": "annotator"}).json()
    assert inv["url"].endswith(inv["token"])
    new = web["client"]()
    csrf = new.get("/api/v1/session").json()["csrf_token"]
    r = new.post(
        "/api/v1/join", json={"token": inv["token"], "name": "newbie", "password": PASSWORD}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 200, r.text
    new.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    me = new.get("/api/v1/me").json()
    assert me["status"] == {"p": "candidate"} and me["projects"] == {"p": "annotator"}  # the project has gold: screened
    t = new.post("/api/v1/projects/p/next", json={}).json()["task"]
    assert t["id"] in web["ids"]["gold"]  # candidates see gold only (and cannot tell)
    again = web["client"]()
    csrf = again.get("/api/v1/session").json()["csrf_token"]
    r = again.post(
        "/api/v1/join", json={"token": inv["token"], "name": "second", "password": PASSWORD}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 400 and "used" in r.json()["detail"]


def test_admin_import_quality_aggregate_export_match_the_cli_code(web, tmp_path):
    from alignkit.feedback.export import aggregate_stage, build_records

    lead = web["client"]("lead")
    rows = [{"prompt": f"new {i}", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(3)]
    out = lead.post("/api/v1/projects/p/admin/import", json={"rows": rows, "stage": "cmp"}).json()
    assert out["tasks"] == 3 and out["tasks_by_stage"] == {}  # stage input "none": nothing more
    for name in ("ann1", "ann2"):
        c = web["client"](name)
        while (t := c.post("/api/v1/projects/p/next", json={}).json()["task"]) is not None:
            c.post(f"/api/v1/projects/p/tasks/{t['id']}/submit", json={"answer": {"overall": "A"}})
    agg = lead.post("/api/v1/projects/p/admin/aggregate", json={"stage": "cmp", "method": "majority"}).json()
    direct = aggregate_stage(web["store"], "p", "cmp", "majority")
    assert agg["tasks"] == len(direct) == 9 and {r["task_id"]: r["label"] for r in agg["rows"]} == {
        k: v.label for k, v in direct.items()
    }
    exp = lead.post("/api/v1/projects/p/admin/export", json={"kind": "pairs", "method": "majority"}).json()
    assert exp["records"] == json.loads(json.dumps(build_records(web["store"], "p", "pairs", method="majority"), default=str))
    people = {r["annotator"]: r for r in lead.get("/api/v1/projects/p/admin/annotators").json()}
    assert people["ann1"]["n_judgments"] == 9 and people["ann1"]["role"] == "annotator"
    assert lead.post("/api/v1/projects/p/admin/annotators/ann2", json={"status": "excluded"}).status_code == 200
    assert web["store"].person("p", "ann2").status == "excluded"
    q = lead.get("/api/v1/projects/p/admin/quality").json()
    assert "cmp" in q["agreement"]


def test_prelabels_reach_annotators_only_where_the_stage_shows_them(web):
    from alignkit.feedback.config import ProjectConfig, StageConfig
    from alignkit.web.accounts import create_account

    store = web["store"]
    stages = [StageConfig(name=n, task_type="binary", overlap=1, show_prelabels=n == "shown") for n in ("hidden", "shown")]
    store.create_project("pl", ProjectConfig(stages=stages))
    create_account(store, "pl_ann", PASSWORD, project="pl", status="active")
    for name in ("hidden", "shown"):
        pid = store.add_prompt("pl", name, status="accepted")
        store.add_task("pl", name, pid, [store.add_response(pid, "r")], prelabel={"good": True}, confidence=0.6)
    c = web["client"]("pl_ann")
    got = {t["stage"]: t["suggestion"] for t in (c.post("/api/v1/projects/pl/next", json={}).json()["task"] for _ in range(2))}
    assert got == {"hidden": None, "shown": {"good": True}}
