"""Atomic writes and the output-folder guard (alignkit.data.files), and the CLI resume / --overwrite paths."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.data.errors import DataError
from alignkit.data.files import (
    FINGERPRINT_FILE,
    atomic_open,
    atomic_write_text,
    check_model_folder,
    guard_run_folder,
    run_fingerprint,
)


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path: Path):
    target = tmp_path / "a.jsonl"
    target.write_text("precious\n")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("half a ")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]


class _Cfg(BaseModel):
    data: str
    lr: float = 0.1
    output: str = "out"
    progress: bool = True


def _fp(tmp_path: Path, **kw) -> dict:
    return run_fingerprint(_Cfg(data=str(tmp_path / "d.jsonl"), **kw), ignore={"output", "progress"})


def test_guard_new_then_same_run_then_different_run(tmp_path: Path):
    (tmp_path / "d.jsonl").write_text("{}\n")
    out = tmp_path / "run"
    assert guard_run_folder(out, _fp(tmp_path)) == "new"
    assert json.loads((out / FINGERPRINT_FILE).read_text())["config"]["lr"] == 0.1
    (out / "checkpoints").mkdir()
    assert guard_run_folder(out, _fp(tmp_path, progress=False)) == "resume"  # progress does not change results
    with pytest.raises(DataError, match=r"lr \(0.1 -> 0.2\)"):
        guard_run_folder(out, _fp(tmp_path, lr=0.2))
    (tmp_path / "d.jsonl").write_text('{"new": 1}\n')
    with pytest.raises(DataError, match="content of --data"):
        guard_run_folder(out, _fp(tmp_path))  # same path, new data: another run


def test_guard_no_resume_and_overwrite(tmp_path: Path):
    (tmp_path / "d.jsonl").write_text("{}\n")
    out = tmp_path / "run"
    guard_run_folder(out, _fp(tmp_path))
    (out / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match="--no-resume"):
        guard_run_folder(out, _fp(tmp_path), resume=False)
    assert guard_run_folder(out, _fp(tmp_path, lr=0.3), overwrite=True) == "overwrote"
    assert sorted(p.name for p in out.iterdir()) == [FINGERPRINT_FILE]


def test_a_folder_with_only_a_fingerprint_counts_as_empty(tmp_path: Path):
    (tmp_path / "d.jsonl").write_text("{}\n")
    out = tmp_path / "run"
    guard_run_folder(out, _fp(tmp_path))
    assert guard_run_folder(out, _fp(tmp_path, lr=0.5)) == "new"  # the first run died before writing anything


def test_overwrite_never_empties_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "keep.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="current folder"):
        guard_run_folder(tmp_path, {"config": {}, "inputs": {}}, overwrite=True)
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_model_folder_check_accepts_a_saved_model(saved_tiny: Path):
    check_model_folder(saved_tiny)  # no error
    check_model_folder("tiny")  # not a folder: left to the loader


def test_cli_resumes_its_own_run_and_overwrite_replaces_another(tmp_path: Path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n" for i in range(4)))
    out = tmp_path / "run"
    args = ["sft", "--data", str(data), "--output", str(out), "--max-steps", "1", "--batch-size", "2", "--no-progress"]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, args)  # the same run: allowed, resumes (nothing left to do)
    assert again.exit_code == 0, again.output
    other = runner.invoke(app, [*args, "--lr", "0.001"])
    assert other.exit_code == 2 and "lr (0.0001 -> 0.001)" in other.output
    (out / "stray.txt").write_text("x")
    replaced = runner.invoke(app, [*args, "--lr", "0.001", "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert not (out / "stray.txt").exists()
    assert json.loads((out / FINGERPRINT_FILE).read_text())["config"]["lr"] == 0.001
    assert os.path.exists(out / "alignkit_run.json")
