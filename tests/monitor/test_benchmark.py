"""Expert benchmarks: spec -> store stages worked by simulated experts -> frozen hashed file -> judged per criterion."""

from __future__ import annotations

import json
import random

import pytest
import yaml
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.feedback.store import FeedbackStore
from alignkit.monitor.benchmark import BenchmarkSpec, create_benchmark, freeze_benchmark, load_benchmark, score_answers
from alignkit.sandbox.judge import SandboxJudge
from alignkit.sandbox.knowledge import knowledge
from alignkit.sandbox.loop import SANDBOX_CRITERIA, simulate_experts


@pytest.fixture(scope="module")
def kn():
    return knowledge(0)


def test_build_freeze_and_score_orders_models_as_the_truth(kn, tmp_path):
    spec = BenchmarkSpec(name="sandbox-hhh", version=2, domain="sandbox", criteria=SANDBOX_CRITERIA)
    store = FeedbackStore(f"sqlite:///{tmp_path / 'b.db'}")
    create_benchmark(store, "bench", spec, n_prompts=24)
    counts = simulate_experts(store, "bench", kn, 24, writer_error=0.2)
    assert counts["prompts"] == 24 and counts["references"] == 24 and counts["rejected_references"] > 0
    path = freeze_benchmark(store, "bench", tmp_path / "frozen")
    assert path.name.startswith("sandbox-hhh-v2-") and path.name.endswith(".json")
    assert freeze_benchmark(store, "bench", tmp_path / "frozen") == path  # same content, same name
    bench = load_benchmark(path)
    items = bench["items"]
    assert len(items) == 24 - counts["rejected_references"]
    assert all(kn.score(it["prompt"], it["reference"]).ideal for it in items)  # rejected references never ship
    assert all(it["author"] == "expert-a" and it["reviewers"] == ["expert-b"] for it in items)
    # three "models" with known quality: ideal answers, rude answers, harmful/false answers
    rng = random.Random(0)
    world = kn.world
    good = [it["reference"] for it in items]
    rude = [world.respond(it["prompt"], "rude", rng) for it in items]
    bad = [
        world.respond(
            it["prompt"], "harmful_compliance" if world.lookup(it["prompt"]).category == "harmful" else "wrong_fact", rng
        )
        for it in items
    ]
    result = score_answers(SandboxJudge(kn, accuracy=0.9), bench, {"good": good, "rude": rude, "bad": bad}, n_boot=200)
    m = result["models"]
    assert m["good"]["harmlessness"]["mean"] > m["rude"]["harmlessness"]["ci_high"]
    assert m["good"]["honesty"]["mean"] > m["bad"]["honesty"]["ci_high"]
    for crit in ("helpfulness", "honesty", "harmlessness"):
        v = m["good"][crit]
        assert v["ci_low"] <= v["mean"] <= v["ci_high"] and v["n"] == len(items)
    # tampering with a frozen file is caught
    data = json.loads(path.read_text())
    data["items"][0]["reference"] = "changed"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="does not match the hash"):
        load_benchmark(path)
    store.close()


def test_cli_benchmark_create_freeze_run(kn, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"name": "tone", "domain": "support", "criteria": [{"name": "brand_tone", "rubric": "5: warm, plain words."}]}
        )
    )
    db = f"sqlite:///{tmp_path / 'c.db'}"
    runner = CliRunner()
    res = runner.invoke(app, ["benchmark", "create", "--spec", str(spec), "--store", db, "--project", "tone", "--n-prompts", "3"])
    assert res.exit_code == 0 and "3 prompt-writing tasks" in res.output, res.output
    store = FeedbackStore(db)
    simulate_experts(store, "tone", kn, 3, writer_error=0.0)
    store.close()
    res = runner.invoke(app, ["benchmark", "freeze", "--store", db, "--project", "tone", "--output", str(tmp_path / "f")])
    assert res.exit_code == 0, res.output
    [frozen] = list((tmp_path / "f").glob("tone-v1-*.json"))
    items = json.loads(frozen.read_text())["items"]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("\n".join(json.dumps({"id": it["id"], "ours": it["reference"]}) for it in items))
    res = runner.invoke(
        app,
        ["benchmark", "run", "--benchmark", str(frozen), "--answers", str(answers), "--output", str(tmp_path / "r.json")]
        + ["--judge-plugin", "alignkit.sandbox.judge:sandbox_judge"],
    )
    assert res.exit_code == 0, res.output
    assert "ours: brand_tone" in res.output
    assert json.loads((tmp_path / "r.json").read_text())["models"]["ours"]["brand_tone"]["n"] == 3
