"""Security: what an annotator can reach (403s), CSRF, escaping of untrusted text, the login rate
limit, signed HttpOnly/SameSite cookies, and the refusal to serve a network without a secret."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer

from alignkit.web.security import SESSION_COOKIE
from tests.web.conftest import PASSWORD, login

ADMIN_ENDPOINTS = [
    ("get", "/api/v1/projects/p/admin/progress", None),
    ("get", "/api/v1/projects/p/admin/annotators", None),
    ("get", "/api/v1/projects/p/admin/quality", None),
    ("post", "/api/v1/projects/p/admin/quality", {"screen": True}),
    ("post", "/api/v1/projects/p/admin/annotators/ann2", {"status": "excluded"}),
    ("post", "/api/v1/projects/p/admin/invitations", {}),
    ("post", "/api/v1/projects/p/admin/import", {"rows": [{"prompt": "x"}]}),
    ("post", "/api/v1/projects/p/admin/aggregate", {"stage": "cmp"}),
    ("post", "/api/v1/projects/p/admin/export", {"kind": "pairs"}),
    ("post", "/api/v1/projects", {"name": "mine"}),
    ("post", "/api/v1/invitations", None),
    ("get", "/p/p/admin", None),
]


def test_annotator_gets_403_on_admin_endpoints(web):
    c = web["client"]("ann1")
    before = web["store"].snapshot()
    for method, url, body in ADMIN_ENDPOINTS:
        r = getattr(c, method)(url, json=body) if body is not None else getattr(c, method)(url)
        assert r.status_code == 403, (url, r.status_code)
    assert web["store"].snapshot() == before


def test_annotator_cannot_reach_other_peoples_tasks_or_unleased_ones(web):
    a, b = web["client"]("ann1"), web["client"]("ann2")
    ta = a.post("/api/v1/projects/p/next", json={}).json()["task"]
    a.put(f"/api/v1/projects/p/tasks/{ta['id']}/draft", json={"draft": {"overall": "B", "note": "private"}})
    a.post(f"/api/v1/projects/p/tasks/{ta['id']}/submit", json={"answer": {"overall": "A"}})
    tb = a.post("/api/v1/projects/p/next", json={}).json()["task"]
    unleased = max(web["ids"]["regular"])
    for tid in (ta["id"], tb["id"], unleased, web["ids"]["gold"][0], 99999):
        assert b.get(f"/api/v1/projects/p/tasks/{tid}").status_code == 403
        assert b.put(f"/api/v1/projects/p/tasks/{tid}/draft", json={"draft": {}}).status_code == 403
        assert b.post(f"/api/v1/projects/p/tasks/{tid}/skip").status_code == 403
        assert b.get(f"/p/p/task/{tid}").status_code == 403
    assert b.post(f"/api/v1/projects/p/tasks/{tb['id']}/submit", json={"answer": {"overall": "A"}}).status_code == 403
    assert b.post(f"/api/v1/projects/p/tasks/{unleased}/submit", json={"answer": {"overall": "A"}}).status_code == 403
    assert [j.annotator for j in web["store"].judgments("p")] == ["ann1"]
    # not a member of another project
    web["store"].create_project("q")
    assert b.post("/api/v1/projects/q/next", json={}).status_code == 403


def test_no_gold_flag_gold_answer_or_peer_answer_in_annotator_responses(web):
    store = web["store"]
    a, b = web["client"]("ann1"), web["client"]("ann2")
    bodies = []
    for c in (a, b):
        while (r := c.post("/api/v1/projects/p/next", json={})).json()["task"] is not None:
            t = r.json()["task"]
            bodies.append(r.text)
            bodies.append(c.get(f"/api/v1/projects/p/tasks/{t['id']}").text)
            bodies.append(c.post(f"/api/v1/projects/p/tasks/{t['id']}/submit", json={"answer": {"overall": "B"}}).text)
        bodies += [c.get(u).text for u in ("/api/v1/projects/p/progress", "/api/v1/projects/p", "/api/v1/projects", "/api/v1/me")]
    text = "\n".join(bodies).lower()
    assert "gold" not in text and "is_gold" not in text and "gold_rate" not in text
    assert "overall" not in text  # nobody's answers (their own or others') come back, nor aggregates
    assert "label" not in text and "annotator_ids" not in text
    assert len(store.judgments("p")) > 0


def test_csrf_missing_or_forged_is_refused(web):
    c = web["client"]("ann1")
    good = c.headers.pop("X-CSRF-Token")
    before = web["store"].snapshot()
    assert c.post("/api/v1/projects/p/next", json={}).status_code == 403
    assert c.post("/api/v1/projects/p/next", json={}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert c.post("/api/v1/me/token", headers={"X-CSRF-Token": good[:-1] + "x"}).status_code == 403
    assert c.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    assert c.post("/p/p/next", data={}).status_code == 403
    assert web["store"].snapshot() == before
    assert c.post("/api/v1/projects/p/next", json={}, headers={"X-CSRF-Token": good}).status_code == 200
    # the login form too: a cross-site login (session fixation) needs the page's token
    anon = web["client"]()
    assert anon.post("/login", data={"name": "ann1", "password": PASSWORD}).status_code == 403
    assert anon.post("/api/v1/login", json={"name": "ann1", "password": PASSWORD}).status_code == 403


def test_forged_session_cookie_is_not_a_login(web):
    c = web["client"]()
    fake = URLSafeTimedSerializer("another-key-0123456789", salt="alignkit-session").dumps({"uid": 1, "csrf": "x"})
    c.cookies.set(SESSION_COOKIE, fake)
    assert c.get("/api/v1/me").status_code == 401
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_session_cookie_is_httponly_samesite_and_signed(web):
    c = web["client"]()
    r = c.get("/api/v1/session")
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_login_is_rate_limited(web):
    c = web["client"]()
    csrf = c.get("/api/v1/session").json()["csrf_token"]
    codes = [
        c.post("/api/v1/login", json={"name": "ann1", "password": "wrong password"}, headers={"X-CSRF-Token": csrf}).status_code
        for _ in range(6)
    ]
    assert codes == [401] * 5 + [429]
    r = c.post("/api/v1/login", json={"name": "ann1", "password": PASSWORD}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 429  # even the right password waits out the window
    login(web["client"](), "ann2")  # other names are not locked out


@pytest.mark.parametrize("evil", ["<script>alert('x')</script>", '"><img src=x onerror=alert(1)>'])
def test_untrusted_text_renders_as_text(web, evil):
    store = web["store"]
    pid = store.add_prompt("p", f"prompt {evil}", status="accepted")
    a, b = store.add_response(pid, f"A says {evil}"), store.add_response(pid, "B")
    tid = store.add_task("p", "cmp", pid, [a, b])
    store.set_annotator("ann1", status="active")
    c = web["client"]("ann1")
    while (t := c.post("/api/v1/projects/p/next", json={}).json()["task"]) is not None and t["id"] != tid:
        c.post(f"/api/v1/projects/p/tasks/{t['id']}/submit", json={"answer": {"overall": "A"}})
    c.put(f"/api/v1/projects/p/tasks/{tid}/draft", json={"draft": {"rationale": evil}})
    html = c.get(f"/p/p/task/{tid}").text
    assert evil not in html
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;" in html and "\\u003c" in html  # escaped in the page, and in the draft's JSON block


def test_server_refuses_a_network_address_without_a_secret(monkeypatch):
    from alignkit.web.server import ServerError, resolve_secret

    monkeypatch.delenv("ALIGNKIT_SECRET_KEY", raising=False)
    with pytest.raises(ServerError, match="secret key"):
        resolve_secret("0.0.0.0", None)
    with pytest.raises(ServerError, match="secret key"):
        resolve_secret("192.168.1.20", "short")
    assert len(resolve_secret("127.0.0.1", None)) >= 32  # loopback: a random key for this run
    assert resolve_secret("0.0.0.0", "k" * 32) == "k" * 32
    monkeypatch.setenv("ALIGNKIT_SECRET_KEY", "e" * 40)
    assert resolve_secret("0.0.0.0", None) == "e" * 40


def test_alignkit_web_refuses_a_network_host_without_a_secret(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from alignkit.cli import app

    monkeypatch.delenv("ALIGNKIT_SECRET_KEY", raising=False)
    r = CliRunner().invoke(app, ["web", "--db", str(tmp_path / "f.db"), "--host", "0.0.0.0", "--port", "8999"])
    assert r.exit_code == 2 and "secret key" in r.output
