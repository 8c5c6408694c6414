"""Pipeline caching: unchanged stages are reused, changed ones rerun with everything downstream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.pipeline.runner import PipelineSpec, load_pipeline, run_pipeline


def _registry(calls: list[str]):
    def make(params, folder):
        calls.append("make")
        (folder / "data.txt").write_text(str(params["n"]))
        return {"data": str(folder / "data.txt"), "n": params["n"]}

    def double(params, folder):
        calls.append("double")
        n = int(Path(params["data"]).read_text())
        if params.get("crash"):
            raise RuntimeError("boom")
        return {"value": 2 * n, "n_list": [params["n"]] * 2}

    return {"make": make, "double": double}


def _spec(tmp_path, n=3, crash=False, extra=None):
    stages = [
        {"name": "a", "uses": "make", "with": {"n": n}},
        {"name": "b", "uses": "double", "with": {"data": "${a.data}", "n": "${a.n}", "crash": crash, **(extra or {})}},
    ]
    return PipelineSpec.model_validate({"workdir": str(tmp_path / "w"), "stages": stages})


def test_second_run_is_fully_cached(tmp_path):
    calls: list[str] = []
    out = run_pipeline(_spec(tmp_path), _registry(calls), echo=lambda s: None)
    assert out["b"]["value"] == 6 and out["b"]["n_list"] == [3, 3]  # a lone reference keeps its type
    run_pipeline(_spec(tmp_path), _registry(calls), echo=lambda s: None)
    assert calls == ["make", "double"]


def test_changing_upstream_reruns_downstream(tmp_path):
    calls: list[str] = []
    run_pipeline(_spec(tmp_path, n=3), _registry(calls), echo=lambda s: None)
    out = run_pipeline(_spec(tmp_path, n=4), _registry(calls), echo=lambda s: None)
    assert calls == ["make", "double", "make", "double"] and out["b"]["value"] == 8


def test_changing_downstream_only_reruns_it(tmp_path):
    calls: list[str] = []
    run_pipeline(_spec(tmp_path), _registry(calls), echo=lambda s: None)
    run_pipeline(_spec(tmp_path, extra={"note": "x"}), _registry(calls), echo=lambda s: None)
    assert calls == ["make", "double", "double"]


def test_crash_resumes_at_the_failed_stage(tmp_path):
    calls: list[str] = []
    with pytest.raises(RuntimeError):
        run_pipeline(_spec(tmp_path, crash=True), _registry(calls), echo=lambda s: None)
    assert not (tmp_path / "w" / "b" / "stage.json").exists()
    # Fixing the stage's own config reruns only that stage.
    run_pipeline(_spec(tmp_path, crash=False), _registry(calls), echo=lambda s: None)
    assert calls == ["make", "double", "double"]
    assert json.loads((tmp_path / "w" / "b" / "stage.json").read_text())["outputs"]["value"] == 6


def test_bad_reference_is_a_clear_error(tmp_path):
    spec = PipelineSpec.model_validate(
        {"workdir": str(tmp_path), "stages": [{"name": "b", "uses": "double", "with": {"data": "${a.data}"}}]}
    )
    with pytest.raises(ValueError, match="refers to stage 'a'"):
        run_pipeline(spec, _registry([]), echo=lambda s: None)


def test_user_file_content_is_part_of_the_hash(tmp_path):
    calls: list[str] = []
    src = tmp_path / "in.txt"
    src.write_text("5")

    def spec() -> PipelineSpec:
        stage = {"name": "b", "uses": "double", "with": {"data": str(src), "n": 1}}
        return PipelineSpec.model_validate({"workdir": str(tmp_path / "w"), "stages": [stage]})

    run_pipeline(spec(), _registry(calls), echo=lambda s: None)
    run_pipeline(spec(), _registry(calls), echo=lambda s: None)
    src.write_text("7")
    out = run_pipeline(spec(), _registry(calls), echo=lambda s: None)
    assert calls == ["double", "double"] and out["b"]["value"] == 14


def test_load_pipeline_rejects_duplicate_names(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("stages:\n  - {name: a, uses: make}\n  - {name: a, uses: make}\n")
    with pytest.raises(ValueError, match="unique"):
        load_pipeline(path)
