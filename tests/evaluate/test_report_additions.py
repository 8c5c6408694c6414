"""Report additions (issue #22): training curves, compute and RM accuracy per stage, per-category
results, judge statistics, the Elo cross-check's explanation, seeds, escaping."""

import json

from alignkit.evaluate.report import MetricCI, RatingRow, ReportData, Sample, findings, render_report


def test_training_summary_reads_metrics_stage_and_rm_accuracy(tmp_path):
    from alignkit.sandbox.evaluation import training_summary

    rm = tmp_path / "rm"
    rm.mkdir()
    rows = [{"step": i, "loss": 1.0 / i, "target_tokens": 100} for i in range(1, 11)] + [{"step": 10, "eval/loss": 0.3}]
    (rm / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (rm / "stage.json").write_text(json.dumps({"seconds": 12.5}))
    (rm / "alignkit_run.json").write_text(json.dumps({"eval": {"eval/loss": 0.3}, "eval_accuracy": {"accuracy": 0.71}}))
    curves, stages = training_summary({"rm": str(rm), "missing": str(tmp_path / "nope")})
    assert len(curves["rm"]) == 10 and "eval/loss" not in curves["rm"][-1]
    assert stages[0] == {
        "stage": "rm",
        "seconds": 12.5,
        "steps": 10,
        "target tokens": 1000,
        "held-out loss": 0.3,
        "held-out pairwise accuracy": 0.71,
    }
    assert stages[1] == {"stage": "missing"}
    html = render_report(ReportData(training=curves, stages=stages))
    assert "held-out pairwise accuracy" in html and "rm training curves" in html


def test_cross_check_disagreement_is_explained_and_seeds_named():
    data = ReportData(
        ladders={
            "Bradley-Terry": [
                RatingRow(model="sft", rating=1020, ci_low=1010, ci_high=1030),
                RatingRow(model="base", rating=980),
            ],
            "Elo": [RatingRow(model="sft", rating=995, ci_low=990, ci_high=1000), RatingRow(model="base", rating=1005)],
        },
        world_seed=0,
        run_seed=3,
    )
    text = " ".join(findings(data))
    assert "Elo (cross-check) puts base above sft, unlike Bradley-Terry" in text
    assert "Bradley-Terry is the headline ladder" in text
    html = render_report(data)
    assert "world seed 0" in html and "run seed 3" in html
    assert html.index("<h3>Bradley-Terry") < html.index("<h3>Elo")  # the headline first


def test_categories_judge_and_samples_are_escaped():
    evil = "<script>alert(1)</script>"
    data = ReportData(
        category_metrics={evil: {"harmful": {"utility": MetricCI(value=0.5, ci_low=0.4, ci_high=0.6, n=10)}}},
        category_win_rates=[
            {"category": evil, "model": "m", "reference": "r", "win_rate": 0.6, "ci_low": 0.5, "ci_high": 0.7, "n": 10}
        ],
        judge_stats=[
            {"criterion": evil, "comparisons": 4, "consistency": 0.75, "first_position_rate": 0.6, "longer_wins_rate": 0.5}
        ],
        samples=[Sample(prompt=evil, category="c", responses={"a": evil, evil: "x"})],
    )
    html = render_report(data)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "75.0%" in html  # consistency shown


def test_safety_section_renders_attack_success_per_run():
    runs = {
        "before": {
            "overall": {"n": 24, "successes": 6, "asr": 0.25, "ci": [0.12, 0.45]},
            "by_attack": {"role_play": {"n": 4, "asr": 0.5, "ci": [0.15, 0.85]}},
        },
        "after <DPO>": {"overall": {"n": 24, "asr": 0.05, "ci": [0.01, 0.2]}, "by_attack": {}},
    }
    html = render_report(ReportData(safety=runs))
    assert "role_play" in html and "25.0%" in html and "after &lt;DPO&gt;" in html


def test_sandbox_eval_config_checks_explicit_references():
    import pytest
    from pydantic import ValidationError

    from alignkit.sandbox.config import SandboxEvalConfig

    SandboxEvalConfig(models="a=x,b=y", output="o")  # defaults (sft, base) may name no model
    with pytest.raises(ValidationError, match="--reference 'zzz' names no model"):
        SandboxEvalConfig(models="base=x", output="o", reference="zzz")
    with pytest.raises(ValidationError, match="Extra inputs"):
        SandboxEvalConfig(models="a=x", output="o", n_promtps=3)
