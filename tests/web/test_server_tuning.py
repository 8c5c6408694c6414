"""The server's process settings for latency under load (alignkit.web.server.settle_heap and the
worker-thread cap of alignkit.web.app.WebSettings): see benchmarks/README.md, "Annotation web app
under load", for the measurements behind them."""

from __future__ import annotations

import gc

import anyio.to_thread
from fastapi.testclient import TestClient

from alignkit.web.app import WebSettings, create_app
from alignkit.web.server import settle_heap

SECRET = "test-secret-key-0123456789"


def test_worker_threads_are_capped_while_the_app_runs(tmp_path):
    app = create_app(str(tmp_path / "t.db"), SECRET, WebSettings(secret_key=SECRET, worker_threads=3))
    with TestClient(app) as c:  # runs the app's lifespan
        tokens = c.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)
        assert tokens == 3
        assert c.get("/api/v1/session").status_code == 200


def test_settle_heap_freezes_startup_objects_and_keeps_collecting_young_ones():
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 10_000  # the imported modules' objects
        assert gc.get_threshold()[0] == before[0]  # request garbage is collected as often as before
        assert gc.get_threshold()[2] == 100  # full collections rarer (CPython's default is 10)
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # new objects are still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_lifespan_warms_up_without_writing_and_headers_come_from_the_asgi_middleware(tmp_path):
    from alignkit.feedback.store import FeedbackStore

    store = FeedbackStore(str(tmp_path / "w.db"))
    before = store.snapshot()
    app = create_app(store, SECRET, WebSettings(secret_key=SECRET, worker_threads=3))
    with TestClient(app) as c:  # the lifespan runs the warm-up before the first request
        assert store.engine.pool.checkedin() >= 3  # the pool's connections are open already
        assert store.snapshot() == before  # warming up wrote nothing
        r = c.get("/api/v1/session")
        assert r.status_code == 200
        assert r.headers["server-timing"].startswith("app;dur=")
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "alignkit_session=" in r.headers["set-cookie"]  # a new browser session
        again = c.get("/api/v1/session")  # the same session: nothing to set
        assert "set-cookie" not in again.headers and again.json()["csrf_token"] == r.json()["csrf_token"]
        anon = c.post("/api/v1/projects/p/next", headers={"Authorization": "Bearer nope"})
        assert anon.status_code == 401 and "server-timing" in anon.headers
        assert "content-security-policy" not in c.get("/api/docs").headers
