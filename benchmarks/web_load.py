"""Load on the annotation web app: N concurrent annotators over HTTP on 127.0.0.1.

The server runs in its own process (uvicorn, one worker, as ``alignkit web`` starts it); each
simulated annotator is a thread with its own :class:`alignkit.web.client.AnnotationClient` and
API token, looping next-task -> submit (with an idempotency key) for a bounded time. Prints p50 /
p99 latency of next-task and submit as the clients saw it and as the server measured it (its
``Server-Timing`` header: from the request reaching the app to the response, so waiting for a
worker thread and the database count, the client's own overhead does not), the server process's
CPU time per request, throughput, and errors (5xx, transport errors, 409s).

    .venv/bin/python benchmarks/web_load.py --backend sqlite --annotators 200 --seconds 30
    .venv/bin/python benchmarks/web_load.py --backend postgresql --pg-url postgresql://...

Results and the machine they were taken on: benchmarks/README.md ("Annotation web app under load").
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import httpx
import psutil

from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.models import Account, Annotator, Membership, Prompt, Response
from alignkit.feedback.store import FeedbackStore
from alignkit.web.client import AnnotationClient, ApiError
from alignkit.web.security import hash_password, new_token, token_hash


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


def _drop_pg_database(admin_url: str, db: str) -> bool:
    """Drop the run's database (its connections too); True when it is gone afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from alignkit.feedback.db import normalize_url

    name = make_url(db).database
    engine = create_engine(make_url(normalize_url(admin_url)), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return conn.execute(text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name}).scalar_one() == 0
    finally:
        engine.dispose()


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
    # One argon2 hash for everybody (the clients use API tokens; 200 hashes would only slow the setup).
    pw, tokens = hash_password("load-password"), []
    with store.write() as s:
        for w in range(n_annotators):
            a = Annotator(name=f"load{w}", role="annotator", status="active")
            s.add(a)
            s.flush()
            token = new_token()
            s.add(Account(annotator_id=a.id, password_hash=pw, api_token_hash=token_hash(token)))
            s.add(Membership(annotator_id=a.id, project_id=store.project("load")[0], role="annotator", status="active"))
            tokens.append(token)
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


def annotators(
    port: int, tokens: list[str], first: int, args: argparse.Namespace, start: Any, ready: Any, go: Any, out: Any
) -> None:
    """One client process: a thread per simulated annotator, looping next-task -> submit until
    ``start + args.seconds``; puts (client latencies, server latencies, errors) on ``out``.

    Everything a client needs is set up before the run starts (the parent waits for every process's
    ``ready``, then sets ``start`` and ``go``), and the threads wait on an event, not by polling: the
    first version set up its 200 clients and polled the clock from 200 threads while the run began,
    and on the shared 2-core box those client processes took the CPU from the server they measured
    for the first seconds (the "start-up burst" of earlier sessions' tables)."""
    # Forked from the parent: keep the collector from walking (and so copying) the inherited heap.
    gc.freeze()
    clients = [AnnotationClient(f"http://127.0.0.1:{port}", token=token, timeout=120, retries=0) for token in tokens]
    clients[0].http.get("/api/v1/session")  # httpx's lazily imported modules, once per process
    lat: dict[str, list[float]] = {"next": [], "submit": []}
    srv: dict[str, list[float]] = {"next": [], "submit": []}
    errors = {"5xx": 0, "transport": 0, "409": 0, "other": 0}
    lock = threading.Lock()
    timeline: list[tuple[float, str, float, float]] | None = [] if args.timeline else None

    def one(w: int, client: AnnotationClient) -> None:
        rng = random.Random(w)
        go.wait()
        t_start = start.value
        time.sleep(max(0.0, t_start - time.time()))
        if args.think > 0:  # people do not all start at once
            time.sleep(rng.uniform(0, args.think))
        while time.time() < t_start + args.seconds:
            for op in ("next", "submit"):
                t0 = time.perf_counter()
                try:
                    if op == "next":
                        task = client.next_task("load")
                        if task is None:
                            return
                    else:
                        if args.think > 0:  # reading and judging
                            time.sleep(rng.expovariate(1 / args.think))
                            t0 = time.perf_counter()
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
                    if client.last_server_ms is not None:
                        srv[op].append(client.last_server_ms / 1000)
                    if timeline is not None:  # (end, op, client s, server s): when the slow requests happened
                        timeline.append((time.time() - start.value, op, lat[op][-1], (client.last_server_ms or 0) / 1000))
        client.close()

    threads = [threading.Thread(target=one, args=(first + i, c), daemon=True) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    ready.put(first)
    for t in threads:
        t.join(args.seconds + args.think * 3 + 180)
    if timeline is not None:
        with open(f"{args.timeline}.{first}", "w") as f:
            f.write(f"# t_start {start.value:.3f}\n")
            f.writelines(f"{t:.3f} {op} {c * 1000:.1f} {v * 1000:.1f}\n" for t, op, c, v in timeline)
    out.put((lat, srv, errors))


def run(args: argparse.Namespace) -> dict:
    """One run; its database (a temporary SQLite file or a fresh PostgreSQL database) is removed at
    the end, also when the run fails."""
    tmp = tempfile.mkdtemp(prefix="alignkit-load-")
    db = os.path.join(tmp, "load.db") if args.backend == "sqlite" else _pg_database(args.pg_url)
    try:
        result = _run(args, db)
    finally:
        dropped = _drop_pg_database(args.pg_url, db) if args.backend == "postgresql" else True
        shutil.rmtree(tmp, ignore_errors=True)
    return {**result, "database_dropped": dropped and not os.path.exists(tmp)}


def _run(args: argparse.Namespace, db: str) -> dict:
    tokens = setup(db, args.annotators, args.tasks, args.overlap)
    port = args.port
    server = start_server(db, port)
    proc = psutil.Process(server.pid)
    # Clients in several processes (threads of one Python process queue on its GIL, which would be
    # counted as server latency); each also records the server's own time (Server-Timing).
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    per = -(-args.annotators // args.client_procs)
    start, ready, go = ctx.Value("d", 0.0), ctx.Queue(), ctx.Event()
    kids = [
        ctx.Process(target=annotators, args=(port, tokens[i : i + per], i, args, start, ready, go, out))
        for i in range(0, args.annotators, per)
    ]
    for k in kids:
        k.start()
    for _ in kids:
        ready.get()
    time.sleep(1.0)  # let the set-up settle
    start.value = t_start = time.time() + 0.5
    go.set()
    time.sleep(max(0.0, t_start - time.time()))
    cpu0, w0 = proc.cpu_times(), time.monotonic()
    parts = [out.get() for _ in kids]
    cpu1, elapsed = proc.cpu_times(), time.monotonic() - w0
    for k in kids:
        k.join(30)
    server.terminate()
    server.wait(30)
    lat = {op: [x for p in parts for x in p[0][op]] for op in ("next", "submit")}
    srv = {op: [x for p in parts for x in p[1][op]] for op in ("next", "submit")}
    errors = {k: sum(p[2][k] for p in parts) for k in parts[0][2]}

    def pct(xs: list[float], q: int) -> float | None:
        return round(statistics.quantiles(xs, n=100)[q - 1] * 1000, 1) if len(xs) >= 2 else None

    store = FeedbackStore(db)
    n_judgments = len(store.judgments("load"))
    store.close()
    n_requests = len(lat["next"]) + len(lat["submit"])
    server_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return {
        "backend": args.backend,
        "annotators": args.annotators,
        "client_procs": len(kids),
        "seconds": round(elapsed, 1),
        "think_s": args.think,
        "next_p50_ms": pct(lat["next"], 50),
        "next_p99_ms": pct(lat["next"], 99),
        "submit_p50_ms": pct(lat["submit"], 50),
        "submit_p99_ms": pct(lat["submit"], 99),
        "server_next_p50_ms": pct(srv["next"], 50),
        "server_next_p99_ms": pct(srv["next"], 99),
        "server_submit_p50_ms": pct(srv["submit"], 50),
        "server_submit_p99_ms": pct(srv["submit"], 99),
        "submits": len(lat["submit"]),
        "submits_per_s": round(len(lat["submit"]) / elapsed, 1),
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(n_requests, 1), 2),
        "load_average": round(os.getloadavg()[0], 1),
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
    ap.add_argument("--timeline", default=None, help="write each request (s into the run, op, client ms, server ms) to FILE.<n>")
    ap.add_argument("--client-procs", type=int, default=4, help="processes the simulated annotators are spread over")
    args = ap.parse_args()
    if args.backend == "postgresql" and not args.pg_url:
        ap.error("--backend postgresql needs --pg-url (or ALIGNKIT_TEST_PG_URL)")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
