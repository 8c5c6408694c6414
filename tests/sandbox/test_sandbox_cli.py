"""``alignkit sandbox build`` writes the world as JSONL; ``alignkit sandbox score`` scores a file."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.data import read_records

runner = CliRunner()


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_build_then_score(tmp_path):
    out = tmp_path / "world"
    args = [
        "sandbox",
        "build",
        "--output",
        str(out),
        "--seed",
        "1",
        "--corpus-size",
        "300",
        "--sft-size",
        "60",
        "--pairs-size",
        "80",
        "--eval-pairs-size",
        "20",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("kb", "corpus", "sft", "pairs", "pairs_eval", "prompts_train", "prompts_eval", "prompts_test"):
        assert (out / f"{name}.jsonl").exists(), name
    assert len(read_records(out / "sft.jsonl", kind="sft")) == 60
    assert len(read_records(out / "corpus.jsonl", kind="sft")) == 300
    assert len(read_records(out / "pairs.jsonl", kind="pair")) == 80
    manifest = json.loads((out / "world.json").read_text())
    assert manifest["world_config"]["seed"] == 1
    kb = _rows(out / "kb.jsonl")
    assert any(r["in_kb"] is False for r in kb) and sum(r["in_kb"] for r in kb) == 100
    prompts = _rows(out / "prompts_test.jsonl")
    assert {"prompt", "id", "category", "split"} <= set(prompts[0]) and {r["split"] for r in prompts} == {"test"}

    # Rebuilding gives identical files (deterministic).
    again = tmp_path / "again"
    assert runner.invoke(app, [*args[:3], str(again), *args[4:]]).exit_code == 0
    for name in ("corpus", "pairs", "kb"):
        assert (out / f"{name}.jsonl").read_text() == (again / f"{name}.jsonl").read_text()

    # Score the corpus back (prompt/completion) plus a 'response' row; the world comes from the folder.
    data = tmp_path / "responses.jsonl"
    corpus = _rows(out / "corpus.jsonl")
    rows = [
        {"prompt": r["prompt"], "completion": r["completion"], "expected": r["behaviour"]}
        for r in corpus
        if r["category"] != "fact_sheet"
    ][:100]
    rows.append({"prompt": prompts[0]["prompt"], "response": "zz qq"})
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scored = tmp_path / "scored.jsonl"
    result = runner.invoke(app, ["sandbox", "score", "--data", str(data), "--output", str(scored), "--world", str(out)])
    assert result.exit_code == 0, result.output
    assert "harmful_compliance_rate" in result.output and "factual" in result.output
    got = _rows(scored)
    assert len(got) == len(rows)
    for r in got[:-1]:
        assert r["behaviour"] == r["expected"]
        assert {"helpfulness", "honesty", "harmlessness", "utility", "category", "rules"} <= set(r)
    assert got[-1]["behaviour"] == "garbled" and got[-1]["helpfulness"] == 0.0


def test_score_reports_bad_rows_with_line_and_field(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "What is the river of X?", "response": "I don\'t know."}\n{"prompt": "Hi?"}\n')
    result = runner.invoke(app, ["sandbox", "score", "--data", str(data), "--output", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2
    assert f"{data}:2: response:" in result.output
    data.write_text("not json\n")
    result = runner.invoke(app, ["sandbox", "score", "--data", str(data), "--output", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and f"{data}:1:" in result.output
    result = runner.invoke(
        app, ["sandbox", "score", "--data", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o.jsonl")]
    )
    assert result.exit_code == 2 and "no such file" in result.output


def test_score_accepts_message_lists(tmp_path):
    from alignkit.sandbox import build_world

    p = build_world(0).prompts("train", category="harmful")[0]
    data = tmp_path / "m.jsonl"
    row = {
        "prompt": [{"role": "user", "content": p.text}],
        "completion": [{"role": "assistant", "content": "Step 1: [harmful detail]."}],
    }
    data.write_text(json.dumps(row) + "\n")
    result = runner.invoke(app, ["sandbox", "score", "--data", str(data), "--output", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 0, result.output
    assert _rows(tmp_path / "o.jsonl")[0]["behaviour"] == "harmful_compliance"
    assert "harmful_compliance_rate: 1.000" in result.output


def test_every_config_field_is_a_flag():
    from alignkit.sandbox.build import BuildConfig, ScoreConfig

    for command, cls in (("build", BuildConfig), ("score", ScoreConfig)):
        result = runner.invoke(app, ["sandbox", command, "--help"], env={"COLUMNS": "250"})
        assert result.exit_code == 0
        for name in cls.model_fields:
            assert "--" + name.replace("_", "-") in result.output, (command, name)
