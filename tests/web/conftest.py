"""Web app fixtures: a store with one compare project (regular and gold tasks), an admin and two
annotators with passwords, and a FastAPI TestClient per person (no network: in-process)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.store import FeedbackStore
from alignkit.web.accounts import create_account
from alignkit.web.app import WebSettings, create_app

SECRET = "test-secret-key-0123456789"
PASSWORD = "correct horse battery"


def make_project(store: FeedbackStore, n_tasks: int = 6, n_gold: int = 2, gold_rate: float = 0.0, overlap: int = 2) -> dict:
    stage = StageConfig(name="cmp", task_type="compare", overlap=overlap, gold_rate=gold_rate)
    store.create_project("p", ProjectConfig(stages=[stage], guidelines="Prefer the more helpful answer."))
    ids = {"regular": [], "gold": []}
    for i in range(n_tasks + n_gold):
        pid = store.add_prompt("p", f"question {i}?", status="accepted")
        a, b = store.add_response(pid, f"good answer {i}", model="m1"), store.add_response(pid, f"bad answer {i}", model="m2")
        gold = i >= n_tasks
        ids["gold" if gold else "regular"].append(
            store.add_task("p", "cmp", pid, [a, b], gold={"overall": "A"} if gold else None)
        )
    return ids


def login(client: TestClient, name: str, password: str = PASSWORD) -> str:
    csrf = client.get("/api/v1/session").json()["csrf_token"]
    r = client.post("/api/v1/login", json={"name": name, "password": password}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    token = r.json()["csrf_token"]
    client.headers["X-CSRF-Token"] = token
    return token


@pytest.fixture
def web(tmp_path):
    store = FeedbackStore(str(tmp_path / "web.db"))
    ids = make_project(store)
    create_account(store, "lead", PASSWORD, project=None, role="admin")
    create_account(store, "ann1", PASSWORD, project="p", status="active")
    create_account(store, "ann2", PASSWORD, project="p", status="active")
    app = create_app(store, SECRET, WebSettings(secret_key=SECRET, login_attempts_per_name=5, login_attempts_per_ip=1000))
    clients = []

    def client(name: str | None = None) -> TestClient:
        c = TestClient(app, base_url="http://127.0.0.1")
        clients.append(c)
        if name:
            login(c, name)
        return c

    yield {"store": store, "ids": ids, "app": app, "client": client}
    for c in clients:
        c.close()
    store.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live(web):
    """The fixture's app served over real HTTP by uvicorn on 127.0.0.1 (a thread)."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(web["app"], host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield {**web, "url": f"http://127.0.0.1:{port}"}
    server.should_exit = True
    thread.join(10)
