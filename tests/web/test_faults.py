"""Faults at small scale: the server process is killed with SIGKILL mid-run and restarted while
scripted annotators keep working through alignkit.web.client. Every submit that got a 2xx is in
the database exactly once, nothing is stored twice, and leases abandoned (by a worker, or by the
crash) expire and go back to the queue, so every task still gets done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx

from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.models import Annotation, Assignment
from alignkit.feedback.store import FeedbackStore
from alignkit.web.accounts import create_account, new_api_token
from alignkit.web.client import AnnotationClient, ApiError
from tests.web.conftest import PASSWORD, free_port

N_TASKS, N_WORKERS = 40, 4


def _start(db: str, port: int) -> subprocess.Popen:
    code = f"from alignkit.web.server import serve; serve({db!r}, '127.0.0.1', {port})"
    env = {**os.environ, "ALIGNKIT_SECRET_KEY": "k" * 40, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/session", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start: " + proc.stderr.read().decode()[-2000:])


def test_kill_9_mid_run_loses_and_duplicates_nothing(tmp_path):
    db = str(tmp_path / "fault.db")
    store = FeedbackStore(db)
    stage = StageConfig(name="cmp", task_type="compare", overlap=1)
    store.create_project("p", ProjectConfig(stages=[stage], lease_minutes=0.05, max_pending=4))  # 3 s leases
    for i in range(N_TASKS):
        pid = store.add_prompt("p", f"q{i}", status="accepted")
        store.add_task("p", "cmp", pid, [store.add_response(pid, f"a{i}"), store.add_response(pid, f"b{i}")])
    tokens = []
    for w in range(N_WORKERS):
        aid = create_account(store, f"w{w}", PASSWORD, project="p", status="active")
        tokens.append(new_api_token(store, aid))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = {"proc": _start(db, port)}
    accepted: list[tuple[int, int]] = []  # (task id, annotation id) of every 2xx submit
    lock = threading.Lock()
    deadline = time.monotonic() + 90

    def work(w: int) -> None:
        client = AnnotationClient(url, token=tokens[w], timeout=5, retries=200, retry_wait=0.05)
        served = 0
        while time.monotonic() < deadline and store.count_tasks("p", status="done") < N_TASKS:
            try:
                task = client.next_task("p")
            except (httpx.TransportError, ApiError):
                time.sleep(0.1)  # server down, or too many open leases: try again
                continue
            if task is None:
                time.sleep(0.3)  # leases held elsewhere may still expire
                continue
            served += 1
            if w == 0 and served % 4 == 0:
                continue  # abandon this lease: it must expire and go back to the queue
            try:
                note = client.submit("p", task["id"], {"overall": "A"})
            except ApiError as err:
                assert err.status == 409, err  # only "lease gone" is acceptable
                continue
            with lock:
                accepted.append((task["id"], note))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(N_WORKERS)]
    for t in threads:
        t.start()
    while len(accepted) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(server["proc"].pid, signal.SIGKILL)  # mid-run, with requests in flight
    server["proc"].wait()
    time.sleep(0.5)
    server["proc"] = _start(db, port)
    for t in threads:
        t.join()
    server["proc"].send_signal(signal.SIGTERM)
    server["proc"].wait(20)

    with store.read() as s:
        rows = {a.id: a.task_id for a in s.query(Annotation)}
        expired = s.query(Assignment).filter(Assignment.status == "expired").count()
    assert store.count_tasks("p", status="done") == N_TASKS  # expired leases came back and were done
    assert len(accepted) == len({n for _, n in accepted})  # no annotation reported twice
    assert dict((n, t) for t, n in accepted) == rows  # every 2xx is stored; nothing stored without one
    assert len(set(rows.values())) == len(rows) == N_TASKS  # overlap 1: one judgment per task, none twice
    assert expired >= 1
