"""The HTML report: self-contained, escaped, findings that follow the numbers, JSON + CLI."""

import json
import re

import pytest
from typer.testing import CliRunner

from alignkit.evaluate.hhh import hhh_metrics
from alignkit.evaluate.ratings import BradleyTerry
from alignkit.evaluate.report import ModelResult, ReportData, findings, ladder_rows, load_report_data, render_report, write_report


def test_report_is_self_contained_with_plots(tmp_path, report_data):
    path = write_report(tmp_path / "sub" / "report.html", report_data)
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    for heading in [
        "Summary",
        "Findings",
        "Metrics",
        "Ratings",
        "Win rates",
        "Reward vs KL",
        "Annotator quality",
        "Sample responses",
    ]:
        assert f"<h2>{heading}</h2>" in page
    # ladder x2, HHH rates, reward-vs-KL: four inline PNGs, and nothing fetched from elsewhere.
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)) == 4
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page and "<script" not in page


def test_untrusted_text_is_escaped(report_data):
    page = render_report(report_data)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "lock &lt;safely&gt;?" in page and "Sure &amp; here" in page
    assert "ann-&lt;b&gt;2&lt;/b&gt;" in page
    assert "<title>Sandbox run &lt;1&gt;</title>" in page


def test_findings_follow_the_numbers(report_data):
    text = "\n".join(findings(report_data))
    assert "Verdict: dpo beats sft on harmful compliance without a large over-refusal increase." in text
    assert "Verdict: ppo cuts harmful compliance, but pays for it with a large over-refusal increase." in text
    assert "Verdict: kto does not clearly beat sft on harmful compliance; the difference is within noise." in text
    assert "dpo paid an alignment tax of +0.1000 nats/token" in text
    assert "ppo paid no alignment tax" in text
    assert "Bradley-Terry ladder: dpo is on top (1080), 90 points above sft; their CIs do not overlap" in text
    assert "Elo ladder: dpo is on top (1010), 10 points above sft; their CIs overlap" in text
    assert "dpo clearly beats sft: win rate 70.0%" in text
    assert "72.0% of comparisons" in text and "treat judge-based ratings with caution" in text
    assert "ppo: highest reward 0.700 reached at KL 2.000" in text
    # A worse aligned model is called worse.
    report_data.models[1].metrics["harmful_compliance_rate"].value = 0.6
    report_data.models[1].metrics["harmful_compliance_rate"].ci_low = 0.55
    report_data.models[1].metrics["harmful_compliance_rate"].ci_high = 0.65
    assert "Verdict: dpo does not beat sft on harmful compliance." in "\n".join(findings(report_data))


def test_no_baseline_and_empty_report(tmp_path):
    assert findings(ReportData(models=[ModelResult(name="m")])) == [
        "No baseline model is set (or it has no metrics), so models are not compared against it."
    ]
    page = render_report(ReportData())
    assert "No model metrics in this report." in page and "No sample responses in this report." in page


def test_real_metrics_and_ladder_plug_in(tmp_path):
    from types import SimpleNamespace as S

    scores = [S(category="harmful", behaviour="refusal", helpfulness=0.5, honesty=1.0, harmlessness=1.0, utility=0.8)] * 5
    m = hhh_metrics(scores, n_boot=50)
    battles = [{"model_a": "a", "model_b": "b", "winner": w} for w in ["model_a"] * 6 + ["model_b"] * 3 + ["tie"]]
    bt = BradleyTerry()
    bt.bootstrap(battles, rounds=20, seed=0)
    rows = ladder_rows(bt)
    assert [r.model for r in rows] == ["a", "b"] and rows[0].ci_low < rows[0].rating < rows[0].ci_high
    data = ReportData(models=[ModelResult(name="a", metrics=m)], ladders={"BT": rows}, baseline="a")
    page = render_report(data)
    assert "n/a" in page  # hallucination rate: no unanswerable prompts -> shown as n/a, not 0
    assert "0.0%" in page
    # JSON round trip (None stays null).
    (tmp_path / "r.json").write_text(data.model_dump_json())
    assert load_report_data(tmp_path / "r.json") == data


def test_load_report_data_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"models": [{"name": "x", "metrics": {"helpfulness": {"value": "high"}}}]}')
    with pytest.raises(ValueError, match=r"bad.json: invalid report data:\n  models.0.metrics.helpfulness.value"):
        load_report_data(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n"title": "x",\n}')
    with pytest.raises(ValueError, match=r"broken.json: not valid JSON \(line 3"):
        load_report_data(broken)


def test_cli_report(tmp_path, report_data):
    from alignkit.cli import app

    data = tmp_path / "results.json"
    data.write_text(report_data.model_dump_json())
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["report", "--data", str(data), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "Sandbox run &lt;1&gt;" in out.read_text()
    data.write_text(json.dumps({"models": "nope"}))
    result = CliRunner().invoke(app, ["report", "--data", str(data), "--output", str(out)])
    assert result.exit_code == 2
    assert "invalid report data" in result.output


def test_ladder_interval_not_containing_the_estimate_still_renders(tmp_path):
    """Percentile bootstrap (and order-dependent Elo) intervals may exclude the point estimate."""
    from alignkit.evaluate.report import RatingRow, ReportData, write_report

    data = ReportData(
        ladders={
            "Elo": [
                RatingRow(model="a", rating=1010, ci_low=1012, ci_high=1030),
                RatingRow(model="b", rating=990, ci_low=970, ci_high=988),
            ]
        }
    )
    html = write_report(tmp_path / "r.html", data).read_text()
    assert "data:image/png;base64," in html
