"""Load on the annotation web app: N concurrent annotators over HTTP on 127.0.0.1.

The server runs in its own process (uvicorn, one worker, as ``alignkit web`` starts it); each
simulated annotator is a thread with its own :class:`alignkit.web.client.AnnotationClient` and
API token, looping next-task -> submit (with an idempotency key) for a bounded time. Prints p50 /
p99 latency of next-task and submit, throughput, and errors (5xx, transport errors, 409s).

    .venv/bin/python benchmarks/web_load.py --backend sqlite --annotators 200 --seconds 30
    .venv/bin/python benchmarks/web_load.py --backend postgresql --pg-url postgresql://...

Results and the machine they were taken on: benchmarks/README.md ("Annotation web app under load").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import httpx

from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.models import Prompt, Response
from alignkit.feedback.store import FeedbackStore
from alignkit.web.accounts import create_account, new_api_token
from alignkit.web.client import AnnotationClient, ApiError


def _pg_database(admin_url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from alignkit.feedback.db import normalize_url

    url = make_url(normalize_url(admin_url))
    name = f"alignkit_load_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def setup(db: str, n_annotators: int, n_tasks: int, overlap: int) -> list[str]:
    store = FeedbackStore(db)
    stage = StageConfig(name="cmp", task_type="compare", overlap=overlap)
    store.create_project("load", ProjectConfig(stages=[stage], max_pending=4))
    with store.write() as s:
        for i in range(n_tasks):
            p = Prompt(project_id=store.project("load")[0], text=f"question {i}", status="accepted")
            s.add(p)
            s.flush()
            a, b = Response(prompt_id=p.id, text=f"answer A {i}"), Response(prompt_id=p.id, text=f"answer B {i}")
            s.add_all([a, b])
            s.flush()
            store._add_task(s, p.project_id, stage, p.id, [a.id, b.id], None, None, None, [])
    tokens = []
    for w in range(n_annotators):
        aid = create_account(store, f"load{w}", "load-password", project="load", status="active")
        tokens.append(new_api_token(store, aid))
    store.close()
    return tokens


def start_server(db: str, port: int) -> subprocess.Popen:
    code = f"from alignkit.web.server import serve; serve({db!r}, '127.0.0.1', {port})"
    env = {**os.environ, "ALIGNKIT_SECRET_KEY": "b" * 40}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/session", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def run(args: argparse.Namespace) -> dict:
    tmp = tempfile.mkdtemp(prefix="alignkit-load-")
    db = os.path.join(tmp, "load.db") if args.backend == "sqlite" else _pg_database(args.pg_url)
    tokens = setup(db, args.annotators, args.tasks, args.overlap)
    port = args.port
    server = start_server(db, port)
    lat: dict[str, list[float]] = {"next": [], "submit": []}
    errors = {"5xx": 0, "transport": 0, "409": 0, "other": 0}
    lock = threading.Lock()
    start_gate = threading.Event()
    stop_at = [0.0]

    def annotator(w: int) -> None:
        rng = random.Random(w)
        client = AnnotationClient(f"http://127.0.0.1:{port}", token=tokens[w], timeout=60, retries=0)
        start_gate.wait()
        while time.monotonic() < stop_at[0]:
            for op in ("next", "submit"):
                t0 = time.perf_counter()
                try:
                    if op == "next":
                        task = client.next_task("load")
                        if task is None:
                            return
                    else:
                        client.submit("load", task["id"], {"overall": "A" if rng.random() < 0.8 else "B"})
                except ApiError as err:
                    key = "5xx" if err.status >= 500 else "409" if err.status == 409 else "other"
                    with lock:
                        errors[key] += 1
                    break
                except httpx.TransportError:
                    with lock:
                        errors["transport"] += 1
                    break
                with lock:
                    lat[op].append(time.perf_counter() - t0)
            if args.think > 0:
                time.sleep(rng.expovariate(1 / args.think))
        client.close()

    threads = [threading.Thread(target=annotator, args=(w,), daemon=True) for w in range(args.annotators)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    stop_at[0] = t0 + args.seconds
    start_gate.set()
    for t in threads:
        t.join(args.seconds + 120)
    elapsed = time.monotonic() - t0
    server.terminate()
    server.wait(30)

    def pct(xs: list[float], q: float) -> float | None:
        return round(statistics.quantiles(xs, n=100)[q - 1] * 1000, 1) if len(xs) >= 2 else None

    store = FeedbackStore(db)
    n_judgments = len(store.judgments("load"))
    store.close()
    return {
        "backend": args.backend,
        "annotators": args.annotators,
        "seconds": round(elapsed, 1),
        "think_s": args.think,
        "next_p50_ms": pct(lat["next"], 50),
        "next_p99_ms": pct(lat["next"], 99),
        "submit_p50_ms": pct(lat["submit"], 50),
        "submit_p99_ms": pct(lat["submit"], 99),
        "submits": len(lat["submit"]),
        "submits_per_s": round(len(lat["submit"]) / elapsed, 1),
        "judgments_in_db": n_judgments,
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url", default=os.environ.get("ALIGNKIT_TEST_PG_URL"))
    ap.add_argument("--annotators", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--overlap", type=int, default=3)
    ap.add_argument("--think", type=float, default=0.0, help="mean pause between tasks (s); 0: as fast as possible")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    if args.backend == "postgresql" and not args.pg_url:
        ap.error("--backend postgresql needs --pg-url (or ALIGNKIT_TEST_PG_URL)")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
