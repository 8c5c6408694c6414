"""``--report-to wandb`` logs every step to a Weights & Biases run (offline: no network in tests)."""

from __future__ import annotations

import json

import pytest

from alignkit.train.config import SFTConfig
from alignkit.train.sft import run_sft

wandb = pytest.importorskip("wandb")  # in the dev extra; skipped only where it cannot be installed


def test_sft_reports_to_an_offline_wandb_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}?", "completion": f"answer {i}"}) + "\n" for i in range(8)))
    out = run_sft(
        SFTConfig(
            data=data, output=tmp_path / "o", max_steps=2, batch_size=4, eval_fraction=0.0, progress=False, report_to="wandb"
        )
    )
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (log_file,) = runs[0].glob("*.wandb")
    assert log_file.stat().st_size > 0
    # wandb >= 0.19 has no Python reader for its log (the Go core writes it); the metric keys and
    # the run config are stored as plain protobuf strings, so look for them in the bytes.
    content = log_file.read_bytes()
    for key in (b"loss", b"target_tokens", b"grad_norm", b"max_steps"):
        assert key in content
