"""Many writers at once: nothing lost, nothing assigned beyond the configured overlap."""

import multiprocessing as mp
import threading
from collections import Counter

from sqlalchemy import func, select

from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.models import Annotation, Assignment
from alignkit.feedback.store import FeedbackStore

N_TASKS, OVERLAP = 30, 3


def _setup(url: str, annotators: list[str]) -> None:
    store = FeedbackStore(url)
    stage = StageConfig(name="cmp", task_type="compare", overlap=OVERLAP)
    store.create_project("p", ProjectConfig(stages=[stage], max_pending=8))
    for i in range(N_TASKS):
        pid = store.add_prompt("p", f"q{i}", status="accepted")
        store.add_task("p", "cmp", pid, [store.add_response(pid, f"a{i}"), store.add_response(pid, f"b{i}")])
    for a in annotators:
        store.add_annotator(a)
    store.close()


def _work(url: str, name: str) -> int:
    """Take and answer tasks until none is left; returns how many submits succeeded."""
    store = FeedbackStore(url, init=False)
    done = 0
    while (view := store.next_task("p", name)) is not None:
        store.submit(name, view.id, {"overall": "A" if view.id % 2 else "B"})
        done += 1
    store.close()
    return done


def _worker_process(url: str, name: str, queue) -> None:
    queue.put((name, _work(url, name)))


def _check(url: str, submitted: dict[str, int]) -> None:
    store = FeedbackStore(url, init=False)
    with store.read() as s:
        n_notes = s.scalar(select(func.count()).select_from(Annotation))
        per_task = Counter(s.scalars(select(Annotation.task_id)))
        pairs = s.execute(select(Assignment.task_id, Assignment.annotator_id)).all()
    assert n_notes == sum(submitted.values())  # every acknowledged submit is stored
    assert n_notes == N_TASKS * OVERLAP  # and all the work got done
    assert set(per_task.values()) == {OVERLAP}  # no task over its overlap
    assert len(pairs) == len(set(pairs))  # nobody got a task twice
    assert all(t.status == "done" and t.n_active == OVERLAP for t in store.tasks("p"))
    store.close()


def test_concurrent_threads(db_url):
    names = [f"t{i}" for i in range(8)]
    _setup(db_url, names)
    results: dict[str, int] = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            results[name] = _work(db_url, name)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    _check(db_url, results)


def test_concurrent_processes(db_url):
    names = [f"p{i}" for i in range(4)]
    _setup(db_url, names)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker_process, args=(db_url, n, queue)) for n in names]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    _check(db_url, results)
