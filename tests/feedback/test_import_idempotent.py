"""Imports are idempotent (issue 21): the same file twice, or an import killed and rerun, ends with one
copy of every prompt, response and task; counts say added / already present / rejected. A file of
submits is all or nothing and safe to rerun. Bad rows are errors naming file, line and field.
Store-level tests run on SQLite and, with ALIGNKIT_TEST_PG_URL, on PostgreSQL."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.data.errors import DataError
from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.workflow import advance, import_items

runner = CliRunner()
ROWS = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(6)] + [
    {"prompt": "rate me", "responses": ["r1", {"text": "r2", "model": "m"}]}
]


def _project(store):
    stages = [StageConfig(name="compare", task_type="compare", input="response_pairs", overlap=1)]
    store.create_project("p", ProjectConfig(stages=stages))


def _copies(store) -> dict[str, int]:
    c = store.counts()
    return {k: c[k] for k in ("prompts", "responses", "tasks", "gold_answers")}


def test_importing_the_same_rows_twice_adds_nothing(store):
    _project(store)
    first = import_items(store, "p", ROWS, stage="compare", gold_fraction=0.5, seed=3)
    advance(store, "p")
    after_first, snap = _copies(store), store.snapshot()
    assert first["added"] == 7 and first["already_present"] == 0 and first["rejected"] == 0
    second = import_items(store, "p", ROWS, stage="compare", gold_fraction=0.5, seed=3)
    assert advance(store, "p") == {"compare": 0}
    assert second == {"added": 0, "already_present": 7, "rejected": 0, "prompts": 0, "tasks": 0, "gold": 0}
    assert _copies(store) == after_first and store.snapshot() == snap
    # a file with one new row among old ones adds exactly that row
    third = import_items(store, "p", [*ROWS[:3], {"prompt": "new one", "chosen": "x", "rejected": "y"}], stage="compare")
    assert (third["added"], third["already_present"], third["tasks"]) == (1, 3, 1)
    assert _copies(store)["prompts"] == after_first["prompts"] + 1


def test_a_killed_import_rerun_ends_with_one_copy(store):
    _project(store)
    # killed mid-way: the import is one transaction, so nothing of it is left
    with pytest.raises(DataError):
        import_items(store, "p", [*ROWS, {"prompt": "x", "chosen": 12345, "rejected": "y"}], stage="compare")
    assert _copies(store) == {"prompts": 0, "responses": 0, "tasks": 0, "gold_answers": 0}
    # killed right after its commit: the rerun finds every row present
    import_items(store, "p", ROWS, stage="compare")
    once = _copies(store)
    again = import_items(store, "p", ROWS, stage="compare")
    assert again["already_present"] == len(ROWS) and _copies(store) == once
    assert once == {"prompts": 7, "responses": 14, "tasks": 7, "gold_answers": 0}


def test_a_row_imported_without_stage_gets_its_task_when_imported_with_one(store):
    _project(store)
    import_items(store, "p", ROWS[:2])
    assert _copies(store)["tasks"] == 0
    counts = import_items(store, "p", ROWS[:2], stage="compare")
    assert counts["tasks"] == 2 and _copies(store)["prompts"] == 2 and _copies(store)["responses"] == 4


@pytest.mark.parametrize(
    "row, field, seen",
    [
        ({"prompt": "x", "chosen": 12345, "rejected": "y"}, "chosen", "a number (12345)"),
        ({"prompt": "x", "chosen": {"text": "a"}, "rejected": "y"}, "chosen", "an object"),
        ({"prompt": 7}, "prompt", "a number (7)"),
        ({"prompt": "x", "responses": "one"}, "responses", "a string"),
        ({"prompt": "x", "responses": [1]}, "responses[0]", "a number (1)"),
        ({"prompt": "x", "gold": "A"}, "gold", "a string"),
        ({"prompt": "x", "prelabel_confidence": 2}, "prelabel_confidence", "a number (2)"),
    ],
)
def test_wrong_types_are_errors_never_coerced(tmp_path, row, field, seen):
    from alignkit.feedback.store import FeedbackStore

    store = FeedbackStore(str(tmp_path / "f.db"))
    _project(store)
    with pytest.raises(DataError) as err:
        import_items(store, "p", [(1, ROWS[0]), (2, row)], source="rows.jsonl")
    assert f"rows.jsonl:2: {field}: expected" in str(err.value) and seen in str(err.value)
    assert _copies(store)["prompts"] == 0
    skipped = import_items(store, "p", [(1, ROWS[0]), (2, row)], source="rows.jsonl", on_bad_row="skip")
    assert (skipped["added"], skipped["rejected"]) == (1, 1) and "rows.jsonl:2" in skipped["rejected_rows"][0]
    store.close()


def _cli(*args: str):
    return runner.invoke(app, ["feedback", *args])


def test_cli_import_twice_reports_counts_and_bad_files_exit_2(tmp_path):
    db, src = str(tmp_path / "f.db"), tmp_path / "rows.jsonl"
    assert _cli("init", "--db", db, "--project", "p").exit_code == 0
    src.write_text("\ufeff" + "".join(json.dumps(r) + "\r\n" for r in ROWS))  # BOM and CRLF are fine
    r1 = _cli("import", "--db", db, "--project", "p", "--input", str(src), "--stage", "compare")
    r2 = _cli("import", "--db", db, "--project", "p", "--input", str(src), "--stage", "compare")
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    c1, c2 = json.loads(r1.output.splitlines()[-1]), json.loads(r2.output.splitlines()[-1])
    assert (c1["added"], c1["already_present"]) == (7, 0) and (c2["added"], c2["already_present"], c2["tasks"]) == (0, 7, 0)
    for name, text, needle in [
        ("empty.jsonl", "", "empty.jsonl"),
        ("number.jsonl", json.dumps({"prompt": "x", "chosen": 12345, "rejected": "y"}) + "\n", "number.jsonl:1: chosen"),
        ("object.jsonl", json.dumps({"prompt": "x", "chosen": {"a": 1}, "rejected": "y"}) + "\n", "object.jsonl:1: chosen"),
    ]:
        (tmp_path / name).write_text(text)
        r = _cli("import", "--db", db, "--project", "p", "--input", str(tmp_path / name))
        assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, (name, r.output)
    r = _cli("export", "--db", db, "--project", "p", "--kind", "sft", "--output", str(tmp_path / "sft.jsonl"))
    assert r.exit_code == 2 and "review_completion" in r.output and not (tmp_path / "sft.jsonl").exists()


def test_cli_submit_file_is_all_or_nothing_and_safe_to_rerun(tmp_path):
    from alignkit.feedback.store import FeedbackStore

    db = str(tmp_path / "f.db")
    store = FeedbackStore(db)
    stages = [StageConfig(name="compare", task_type="compare", overlap=1)]
    store.create_project("p", ProjectConfig(stages=stages))
    import_items(store, "p", ROWS[:4], stage="compare")
    store.add_annotator("a", project="p")
    views = [store.next_task("p", "a") for _ in range(3)]
    store.close()
    good = [{"annotator": "a", "task_id": v.id, "answer": {"overall": "A"}} for v in views]
    src = tmp_path / "answers.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in [*good[:2], {**good[2], "answer": {"overall": "C"}}]))
    r = _cli("submit", "--db", db, "--input", str(src))
    assert r.exit_code == 2 and "answers.jsonl:3" in r.output and "nothing from this file was stored" in r.output
    assert FeedbackStore(db).counts()["annotations"] == 0
    src.write_text("".join(json.dumps(r) + "\n" for r in good))
    r = _cli("submit", "--db", db, "--input", str(src))
    assert r.exit_code == 0 and "stored 3 answers (0 already" in r.output
    r = _cli("submit", "--db", db, "--input", str(src))  # rerun: recognised, nothing stored twice
    assert r.exit_code == 0 and "stored 0 answers (3 already" in r.output
    assert FeedbackStore(db).counts()["annotations"] == 3
    src.write_text(json.dumps({"annotator": "a", "task_id": "7", "answer": {}}) + "\n")
    r = _cli("submit", "--db", db, "--input", str(src))
    assert r.exit_code == 2 and "answers.jsonl:1: task_id: expected a task id (integer), saw a string" in r.output
