"""Export loads texts and raw judgments in chunked ``IN`` queries (issue #18): the records are the
same as the old one-query-per-row code's, and no statement carries more ids than ``IN_CHUNK``."""

import gc
from collections import defaultdict

import pytest
from sqlalchemy import event, select

from alignkit.feedback import export
from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.models import Annotation, Annotator, Prompt, Response, Task
from alignkit.feedback.workflow import advance, import_items

N_ITEMS = 7  # more tasks per stage than the chunk sizes below (2 and 3)


def _old_texts(store, task_ids):
    """The export's text lookup before chunking: one query per task, prompt and response."""
    with store.read() as s:
        out = {}
        for tid in task_ids:
            t = s.get_one(Task, tid)
            prompt = s.get_one(Prompt, t.prompt_id).text if t.prompt_id else ""
            out[tid] = (prompt, [s.get_one(Response, r).text for r in t.response_ids or []], t)
        return out


def _old_raw(store, project, task_ids):
    """The raw-judgment lookup before chunking: one ``IN`` list of every task id."""
    out = defaultdict(list)
    active = {p.id for p in store.people(project).values() if p.status == "active"}
    with store.read() as s:
        q = (
            select(Annotation, Annotator.name)
            .join(Annotator, Annotator.id == Annotation.annotator_id)
            .where(Annotation.task_id.in_(task_ids))
            .order_by(Annotation.id)
        )
        for note, name in s.execute(q).all():
            if note.annotator_id in active:
                out[note.task_id].append({"annotator": name, **note.answer})
    return out


@pytest.fixture
def filled(store):
    """Compare, binary and rank stages over N_ITEMS items, judged by a, b, c and d; d is then
    excluded, so the raw judgments of export must leave d's out."""
    stages = [
        StageConfig(name="cmp", task_type="compare", input="response_pairs", overlap=3, payload={"criteria": ["helpful"]}),
        StageConfig(name="bin", task_type="binary", input="responses", overlap=2),
        StageConfig(name="rank", task_type="rank", input="response_sets", overlap=2, payload={"k": 3}),
    ]
    store.create_project("p", ProjectConfig(stages=stages))
    names = ["a", "b", "c", "d"]
    for n in names:
        store.add_annotator(n, project="p", status="active")
    items = [{"prompt": f"q{i}", "responses": [f"good {i}", f"bad {i}", f"ok {i}"]} for i in range(N_ITEMS)]
    import_items(store, "p", items)
    advance(store, "p")

    def answer(name, view):
        rank = [["good", "ok", "bad"].index(r.split()[0]) for r in view.responses]
        if view.type == "binary":
            return {"good": (rank[0] < 2) != (name == "d")}
        if view.type == "rank":
            order = sorted(range(len(rank)), key=rank.__getitem__)
            return {"order": order if name != "d" else order[::-1]}
        i = int(view.prompt[1:])
        if i % 3 == 0 and name in ("a", "d"):
            return {"overall": "tie"}
        better = "A" if rank[0] < rank[1] else "B"
        return {"overall": better, "criteria": {"helpful": better if name != "c" else "tie"}, "harms": []}

    progress = True
    while progress:
        progress = False
        for name in names:
            view = store.next_task("p", name)
            if view is not None:
                store.submit(name, view.id, answer(name, view))
                progress = True
    store.set_annotator("d", project="p", status="excluded")
    return store


@pytest.mark.parametrize("kind", ["pairs", "binary", "rankings"])
def test_chunked_export_equals_per_row_export(filled, monkeypatch, kind):
    monkeypatch.setattr(export, "IN_CHUNK", 2)
    chunked = export.build_records(filled, "p", kind, method="majority")
    monkeypatch.setattr(export, "_texts", _old_texts)
    monkeypatch.setattr(export, "_raw", _old_raw)
    before = export.build_records(filled, "p", kind, method="majority")
    assert chunked == before
    assert len(chunked) >= N_ITEMS - 3  # the compare stage's ties (q0, q3, q6 may tie) aside, a row per item
    assert all("d" not in {j["annotator"] for j in r["judgments"]} for r in chunked)


def test_more_task_ids_than_the_chunk_size(filled, monkeypatch):
    monkeypatch.setattr(export, "IN_CHUNK", 3)
    tasks = filled.tasks("p", "rank")
    ids = [t.id for t in tasks][::-1]  # any order in, the same order out
    assert len(ids) == N_ITEMS > 2 * export.IN_CHUNK
    sizes = []

    def count(_conn, _cursor, statement, parameters, _context, _many):
        if " IN (" in statement:
            sizes.append(len(parameters))

    event.listen(filled.engine, "before_cursor_execute", count)
    try:
        texts = export._texts(filled, ids)
        raw = export._raw(filled, "p", ids)
    finally:
        event.remove(filled.engine, "before_cursor_execute", count)
    assert list(texts) == ids
    for tid, (prompt, responses, task) in texts.items():
        i = int(prompt[1:])
        assert task.id == tid and responses == [f"good {i}", f"bad {i}", f"ok {i}"]  # the task's order
    assert set(raw) <= set(ids) and sum(map(len, raw.values())) >= N_ITEMS  # d's left out, a/b/c's kept
    assert sizes and max(sizes) <= 3
    # texts: tasks, prompts, responses; raw: annotations; each in ceil(7 / 3) = 3 chunks, responses 21 ids → 7
    assert len(sizes) == 3 + 3 + 7 + 3
    assert raw == _old_raw(filled, "p", ids)


def test_export_pauses_the_collector_and_restores_it(filled, monkeypatch):
    seen = []
    real = export._texts
    monkeypatch.setattr(export, "_texts", lambda *a: seen.append(gc.isenabled()) or real(*a))
    assert gc.isenabled()
    export.build_records(filled, "p", "pairs", method="majority")
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        export.build_records(filled, "p", "pairs", method="majority")
        assert not gc.isenabled()  # a caller's own setting is left as it was
    finally:
        gc.enable()
