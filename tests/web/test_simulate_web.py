"""``feedback simulate --web`` runs the sandbox crowd through the HTTP API and gives the same
figures as the direct path on the same seed (same leases, same answers, same aggregation)."""

from __future__ import annotations

from alignkit.sandbox.config import SimulateConfig
from alignkit.sandbox.simulate import simulate


def test_simulate_through_the_web_api_matches_the_direct_path(tmp_path):
    common = dict(n_items=24, n_gold=24, n_annotators=6, spammer_fraction=0.34, n_screening=24, progress=False, seed=3)
    direct = simulate(SimulateConfig(output=str(tmp_path / "direct"), **common))
    web = simulate(SimulateConfig(output=str(tmp_path / "web"), web=True, **common))
    d, w = direct.model_dump(), web.model_dump()
    assert w.pop("export_path").endswith("web/pairs.jsonl") and d.pop("export_path").endswith("direct/pairs.jsonl")
    assert w == d  # accuracy figures, exclusions, flags, per-annotator quality: all the same
    assert d["judgments_per_item"] > 0 and d["export_rows"] > 0 and d["spammers"]
