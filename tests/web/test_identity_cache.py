"""The web app remembers who a token is for a minute (alignkit.web.app.UserCache); these tests
check that the memory never delays a refusal: a replaced token, a role taken away, an exclusion
made by another process (the CLI) all apply at the very next request."""

from __future__ import annotations

import subprocess
import sys

from fastapi.testclient import TestClient

from alignkit.web import accounts


def _bearer(web, name: str) -> tuple[TestClient, str]:
    c = web["client"](name)
    token = c.post("/api/v1/me/token").json()["token"]
    b = web["client"]()
    b.headers["Authorization"] = f"Bearer {token}"
    return b, token


def test_a_known_token_is_looked_up_once_then_remembered(web, monkeypatch):
    b, _ = _bearer(web, "ann1")
    calls = []
    real = accounts.user_by_token
    monkeypatch.setattr(accounts, "user_by_token", lambda store, token: calls.append(token) or real(store, token))
    assert web["app"].state.users.ttl >= 30  # long enough that people pausing ~30 s hit it
    for _ in range(3):
        assert b.get("/api/v1/me").status_code == 200
    assert len(calls) == 1


def test_a_replaced_token_is_refused_at_the_next_request(web):
    b, _ = _bearer(web, "ann1")
    assert b.post("/api/v1/projects/p/next", json={}).status_code == 200  # cached now
    ann1 = web["store"].person("p", "ann1").id
    accounts.new_api_token(web["store"], ann1)  # not through the endpoint: no explicit cache clear
    r = b.post("/api/v1/projects/p/next", json={})
    assert r.status_code == 401, r.text


def test_a_role_change_through_the_store_applies_at_the_next_request(web):
    b, _ = _bearer(web, "ann1")
    assert b.get("/api/v1/projects/p/admin/quality").status_code == 403
    web["store"].set_annotator("ann1", role="admin", project="p")
    assert b.get("/api/v1/projects/p/admin/quality").status_code == 200
    web["store"].set_annotator("ann1", role="annotator", project="p")
    assert b.get("/api/v1/projects/p/admin/quality").status_code == 403


def test_an_exclusion_by_another_process_applies_at_once(web):
    b, _ = _bearer(web, "ann1")
    task = b.post("/api/v1/projects/p/next", json={}).json()["task"]
    assert task is not None
    url = str(web["store"].engine.url.database)
    code = (
        "from alignkit.feedback.store import FeedbackStore; "
        f"FeedbackStore({url!r}).set_annotator('ann1', status='excluded', project='p')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    # The cached identity is still ann1 (another process cannot reach this cache), but the store
    # reads the status in every next-task and submit transaction.
    assert b.post("/api/v1/projects/p/next", json={}).status_code == 403
    r = b.post(f"/api/v1/projects/p/tasks/{task['id']}/submit", json={"answer": {"overall": "A"}})
    assert r.status_code == 403, r.text


def test_a_change_during_a_lookup_is_not_remembered(web):
    cache = web["app"].state.users
    store = web["store"]

    def load_while_changing():
        store.people_changed()  # someone changes a person while this lookup runs
        return None

    assert cache.get(("token", "x"), load_while_changing) is None
    assert cache.peek(("token", "x")) == (False, None)  # stale answer not kept
    assert cache.get(("token", "y"), lambda: None) is None
    assert cache.peek(("token", "y")) == (True, None)
