"""The ``alignkit feedback`` commands end to end, and a small simulated-crowd run on the sandbox."""

import json

from typer.testing import CliRunner

from alignkit.cli import app

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, ["feedback", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_init_import_assign_submit_quality_aggregate_export(tmp_path):
    db = str(tmp_path / "fb.db")
    _ok(["init", "--db", db, "--project", "p", "--overlap", "2", "--gold-rate", "0"])
    rows = [
        {"prompt": f"q{i}", "responses": [{"text": f"good {i}", "model": "m1"}, {"text": f"bad {i}", "model": "m2"}]}
        for i in range(3)
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows))
    out = _ok(["import", "--db", db, "--project", "p", "--input", str(src), "--annotators", "ann1,ann2"])
    assert json.loads(out.strip().splitlines()[-1])["tasks_by_stage"] == {"compare": 3}
    answers = []
    for name in ("ann1", "ann2"):
        views = [
            json.loads(x)
            for x in _ok(["assign", "--db", db, "--project", "p", "--annotator", name, "--n", "5"]).splitlines()
            if x.startswith("{")
        ]
        assert len(views) == 3 and "is_gold" not in views[0]
        answers += [{"annotator": name, "task_id": v["id"], "answer": {"overall": "A"}} for v in views]
    ans = tmp_path / "answers.jsonl"
    ans.write_text("\n".join(json.dumps(a) for a in answers))
    assert "stored 6 answers" in _ok(["submit", "--db", db, "--input", str(ans)])
    assert "ann1" in _ok(["quality", "--db", db, "--project", "p"])
    agg = json.loads(
        _ok(["aggregate", "--db", db, "--project", "p", "--stage", "compare", "--method", "majority"]).splitlines()[-1]
    )
    assert agg == {"tasks": 3, "labels": {"A": 3}, "mean_confidence": 1.0}
    out_path = tmp_path / "pairs.jsonl"
    assert "wrote 3 pairs records" in _ok(["export", "--db", db, "--project", "p", "--output", str(out_path)])
    first = json.loads(out_path.read_text().splitlines()[0])
    assert first["chosen"] == "good 0" and sorted(first["annotator_ids"]) == ["ann1", "ann2"]


def test_cli_bad_input_is_one_clear_line(tmp_path):
    db = str(tmp_path / "fb.db")
    _ok(["init", "--db", db, "--project", "p"])
    bad = tmp_path / "answers.jsonl"
    bad.write_text(json.dumps({"annotator": "x", "task_id": 42, "answer": {}}))
    result = runner.invoke(app, ["feedback", "submit", "--db", db, "--input", str(bad)])
    assert result.exit_code == 2 and "answers.jsonl:1: not stored: no task with id 42" in result.output
    bad.write_text("{not json")
    result = runner.invoke(app, ["feedback", "import", "--db", db, "--project", "p", "--input", str(bad)])
    assert result.exit_code == 2 and "answers.jsonl:1" in result.output and "Traceback" not in result.output


def test_simulate_on_sandbox_excludes_spammers(tmp_path):
    out = _ok(
        [
            "simulate",
            "--output",
            str(tmp_path / "sim"),
            "--n-items",
            "40",
            "--n-gold",
            "40",
            "--n-annotators",
            "8",
            "--spammer-fraction",
            "0.25",
            "--n-screening",
            "40",
            "--no-progress",
            "--seed",
            "0",
        ]
    )
    result = json.loads(out[out.index("{") :])
    assert result["spammers"] and set(result["spammers"]) <= set(result["excluded"]) | set(result["flagged"])
    assert result["n_items"] == 40 and result["export_rows"] > 30
    assert result["accuracy"]["dawid_skene"] > 0.7 and result["accuracy"]["majority"] > 0.7
    rows = [json.loads(x) for x in (tmp_path / "sim" / "pairs.jsonl").read_text().splitlines()]
    assert all(set(r["annotator_ids"]).isdisjoint(result["spammers"]) for r in rows)


def test_confusion_oracle_uses_an_inverted_annotator_as_evidence():
    from alignkit.sandbox.simulate import confusion_oracle_accuracy

    truth = {1: "A", 2: "A", 3: "B", 4: "B"}
    flip = {"A": "B", "B": "A"}
    judgments = [(i, "right", t) for i, t in truth.items()] + [(i, "inverted", flip[t]) for i, t in truth.items()]
    # Majority vote ties on every item; knowing "inverted" always answers the other label, the
    # oracle reads both votes the same way. Smoothed counts: right = [[2.5, .5], [.5, 2.5]] per row.
    assert confusion_oracle_accuracy(judgments, truth) == 1.0
    # A coin-flipper alone (answers A everywhere) carries no evidence: items fall to the first label.
    assert confusion_oracle_accuracy([(i, "lazy", "A") for i in truth], truth) == 0.5


def test_cli_annotators_add_and_list_per_project(tmp_path):
    db = str(tmp_path / "fb.db")
    _ok(["init", "--db", db, "--project", "p"])
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "g", "rejected": f"b{i}"}) + "\n" for i in range(4)))
    _ok(["import", "--db", db, "--project", "p", "--input", str(rows), "--stage", "compare", "--gold-fraction", "1"])
    _ok(["init", "--db", db, "--project", "q"])
    _ok(["annotators", "add", "--db", db, "--project", "p", "--names", "ann1,ann2"])  # p has gold: candidates
    _ok(["annotators", "add", "--db", db, "--project", "q", "--names", "ann1", "--role", "reviewer"])
    listed = {r["name"]: r for r in map(json.loads, _ok(["annotators", "list", "--db", db, "--project", "p"]).splitlines())}
    assert {n: (r["role"], r["status"]) for n, r in listed.items()} == {
        "ann1": ("annotator", "candidate"),
        "ann2": ("annotator", "candidate"),
    }
    in_q = {r["name"]: r for r in map(json.loads, _ok(["annotators", "list", "--db", db, "--project", "q"]).splitlines())}
    assert (in_q["ann1"]["role"], in_q["ann1"]["status"]) == ("reviewer", "active")
    result = runner.invoke(app, ["feedback", "assign", "--db", db, "--project", "p", "--annotator", "ann1"])
    assert result.exit_code == 0 and '"id"' in result.output  # the candidate is served (gold, unmarked)
