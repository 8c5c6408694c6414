"""``alignkit ratings --battles FILE`` end to end, checked against choix on the same battles."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from alignkit.cli import app


def _write_battles(path, n=600, seed=0):
    rng = np.random.default_rng(seed)
    strengths = {"alpha": 0.8, "beta": 0.0, "gamma": -0.5, "delta": 0.3}
    names = list(strengths)
    rows = []
    for _ in range(n):
        i, j = rng.choice(4, size=2, replace=False)
        a, b = names[i], names[j]
        p = 1 / (1 + math.exp(-(strengths[a] - strengths[b])))
        u = rng.random()
        winner = "tie (bothbad)" if u < 0.05 else "tie" if u < 0.12 else "model_a" if u < 0.12 + 0.88 * p else "model_b"
        rows.append({"model_a": a, "model_b": b, "winner": winner, "language": "English"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return rows


def test_ratings_cli_matches_choix_and_writes_table_json_plot(tmp_path):
    choix = pytest.importorskip("choix")
    rows = _write_battles(tmp_path / "battles.jsonl")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["ratings", "--battles", str(tmp_path / "battles.jsonl"), "--output", str(out), "--rounds", "30", "--elo-rounds", "10"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "ratings.json").read_text())
    assert data["battles"] == 600 and data["headline"] == "Bradley-Terry"
    assert (out / "ratings.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "ratings.md").read_text()
    assert "| 1 | alpha |" in table  # strongest first

    # choix on the same battles, ties as one win each way (each battle doubled), alpha = reg.
    names = sorted({r["model_a"] for r in rows} | {r["model_b"] for r in rows})
    idx = {m: i for i, m in enumerate(names)}
    pairs = []
    for r in rows:
        a, b = idx[r["model_a"]], idx[r["model_b"]]
        pairs += {"model_a": [(a, b)] * 2, "model_b": [(b, a)] * 2}.get(r["winner"], [(a, b), (b, a)])
    ref = choix.ilsr_pairwise(len(names), pairs, alpha=1e-4, tol=1e-12)
    ref = 1000 + 400 * (ref - ref.mean()) / math.log(10)
    ours = {row["model"]: row for row in data["ladders"]["Bradley-Terry"]}
    for m in names:
        assert ours[m]["rating"] == pytest.approx(ref[idx[m]], abs=0.05)
        assert ours[m]["ci_low"] < ours[m]["rating"] < ours[m]["ci_high"]
    for row in data["ladders"]["Elo"]:  # the cross-check's interval contains its own point
        assert row["ci_low"] <= row["rating"] <= row["ci_high"]


def test_ratings_cli_davidson_and_style(tmp_path):
    rows = _write_battles(tmp_path / "b.jsonl", n=300, seed=1)
    for k, r in enumerate(rows):
        r["conv_metadata"] = {"sum_assistant_a_tokens": 10 + k % 7, "sum_assistant_b_tokens": 12}
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "o"
    args = ["ratings", "--battles", str(tmp_path / "b.jsonl"), "--output", str(out), "--ties", "davidson"]
    result = CliRunner().invoke(app, [*args, "--style", "length", "--rounds", "5", "--no-elo"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "ratings.json").read_text())
    assert data["headline"] == "Bradley-Terry (style-controlled)"
    assert 0 < data["davidson_tie_param"] < 1 and "length" in data["style_coefficients"]
    assert "Elo" not in data["ladders"]


def test_ratings_cli_bad_winner_is_one_line_error(tmp_path):
    (tmp_path / "b.jsonl").write_text(
        '{"model_a": "x", "model_b": "y", "winner": "tie"}\n{"model_a": "x", "model_b": "y", "winner": "A"}\n'
    )
    result = CliRunner().invoke(app, ["ratings", "--battles", str(tmp_path / "b.jsonl"), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "b.jsonl:2: winner: expected one of model_a, model_b, tie, saw a string ('A')" in result.output
