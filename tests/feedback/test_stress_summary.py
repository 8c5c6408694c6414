"""The screening stress benchmark's summary from stored runs (``feedback_quality.py --stress-summary``).

Two rules run in separate processes are compared seed by seed from their ``--json`` files, so the
paired numbers must come out as worked by hand here, and a bad line must name its file and line.
"""

import importlib.util
import json
from pathlib import Path

import pytest

from alignkit.sandbox.simulate import SimulateResult

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("feedback_quality", ROOT / "benchmarks" / "feedback_quality.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result(ds: float, admitted_spammer: bool, probation: bool) -> SimulateResult:
    spammers = ["ann-000", "ann-001"]
    quality = [
        {"annotator": "ann-000", "status": "active" if admitted_spammer else "excluded", "n_judgments": 30},
        {"annotator": "ann-001", "status": "excluded", "n_judgments": 10},
        {"annotator": "ann-002", "status": "active", "n_judgments": 50},
    ]
    accuracy = {"dawid_skene": ds, "majority": 0.5}
    if probation:
        accuracy["dawid_skene_with_probation"] = ds + 0.01
    return SimulateResult(
        n_items=10,
        judgments_per_item=3.0,
        spammers=spammers,
        excluded=[q["annotator"] for q in quality if q["status"] == "excluded"],
        flagged=[],
        accuracy=accuracy,
        best_single=None,
        quality=quality,
    )


def write(path: Path, rule: str, runs: dict[int, SimulateResult]) -> None:
    path.write_text("".join(json.dumps({"rule": rule, "seed": s, **r.model_dump()}) + "\n" for s, r in runs.items()))


def test_paired_summary_from_two_files(tmp_path, capsys):
    fq = load_benchmark()
    write(
        tmp_path / "p.jsonl",
        "probation",
        {1: result(0.875, False, True), 2: result(0.625, True, True), 3: result(0.75, False, True)},
    )
    write(tmp_path / "s.jsonl", "sprt", {1: result(0.75, False, False), 2: result(0.75, False, False)})
    runs = fq.load_stress_runs([str(tmp_path / "p.jsonl"), str(tmp_path / "s.jsonl")])
    assert sorted(runs) == ["probation", "sprt"] and sorted(runs["probation"]) == [1, 2, 3]
    fq.stress_summary(runs, None)
    out = capsys.readouterr().out
    assert "# Spammer stress (seeds 1..2)" in out  # the seeds both rules ran
    assert "1 of 6" in out  # probation: one spammer admitted over three seeds of two
    assert "0 of 4" in out  # SPRT
    # paired on seeds 1 and 2: differences +0.125 and -0.125, mean 0; sd 0.125 * sqrt(2), so the 95 %
    # half-width is t(0.975, 1 df) 12.706 * 0.125 * sqrt(2) / sqrt(2) = 1.588
    assert "probation's dawid_skene - SPRT's DS (paired, 2 seeds): 0.000 ± 1.588" in out
    assert "ahead in 1, behind in 1" in out
    # the SPRT has no probation accuracy: its line leaves it out instead of failing on it
    sprt_part = out.split("## sprt")[1].split("probation's")[0]
    assert "DS + probation" not in sprt_part and "DS (active) 0.750" in sprt_part


def test_bad_line_names_file_and_line(tmp_path):
    fq = load_benchmark()
    path = tmp_path / "p.jsonl"
    write(path, "probation", {1: result(0.9, False, True)})
    path.write_text(path.read_text() + '{"seed": 2}\n')
    with pytest.raises(SystemExit, match=r"p\.jsonl:2: not a stress result line"):
        fq.load_stress_runs([str(path)])
