"""Run a pipeline file: stages in order, each cached by a hash of its inputs and config.

A pipeline is a YAML file::

    workdir: runs/demo
    stages:
      - name: world
        uses: sandbox.build
        with: {seed: 0}
      - name: sft
        uses: train.sft
        with: {data: "${world.sft}", max_steps: 100}

``uses`` names a stage function: a built-in name (see :data:`alignkit.pipeline.registry.STAGES`) or
``python:package.module:function`` for your own (see :mod:`alignkit.pipeline.registry`); ``with``
is its parameters, where ``${stage.key}`` refers to an output of an earlier stage. Each stage writes into
``workdir/<name>/`` and, when it finishes, a ``stage.json`` holding its hash and outputs.

Caching and resume: a stage's hash covers its function name, its parameters after substitution,
the hashes of the stages it refers to, and the content of any input file the user named. If
``stage.json`` exists with the same hash the stage is skipped; otherwise it runs (training stages
then resume from their own checkpoints inside the folder, so a killed run loses at most one
checkpoint interval). Changing one stage's config reruns it and everything downstream of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from alignkit.pipeline.registry import STAGES, StageFn, StageNotFound, check_uses, resolve_stage

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
OVERRIDE_SPLIT = re.compile(r",\s*(?=[A-Za-z0-9_\-]+\.[A-Za-z0-9_]+=)")
REF = re.compile(r"\$\{([A-Za-z0-9_\-]+)\.([A-Za-z0-9_\-\.]+)\}")


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., pattern=r"^[A-Za-z0-9_\-]+$")
    uses: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workdir: Path = Path("runs/pipeline")
    seed: int = 0
    stages: list[StageSpec]


def load_pipeline(path: Path) -> PipelineSpec:
    raw = yaml.safe_load(Path(path).read_text())
    spec = PipelineSpec.model_validate(raw)
    names = [s.name for s in spec.stages]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"{path}: stage names must be unique, repeated: {sorted(duplicates)}")
    return spec


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(path)).encode())
                h.update(_file_digest(p).encode())
    else:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _substitute(value: Any, outputs: dict[str, dict[str, Any]], hashes: dict[str, str], deps: set[str], where: str) -> Any:
    """Replace ``${stage.key}`` references with earlier stages' outputs (recording dependencies)."""
    if isinstance(value, dict):
        return {k: _substitute(v, outputs, hashes, deps, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, outputs, hashes, deps, where) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match[str]) -> Any:
        stage, key = match.group(1), match.group(2)
        if stage not in outputs:
            raise ValueError(f"{where}: '${{{stage}.{key}}}' refers to stage '{stage}', which does not run before it")
        node: Any = outputs[stage]
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"{where}: stage '{stage}' has no output '{key}' (it has: {sorted(outputs[stage])})")
            node = node[part]
        deps.add(stage)
        return node

    whole = REF.fullmatch(value)
    if whole:  # a lone reference keeps the output's type (list, number, ...)
        return lookup(whole)
    return REF.sub(lambda m: str(lookup(m)), value)


def stage_hash(uses: str, params: dict[str, Any], dep_hashes: list[str], workdir: Path) -> str:
    h = hashlib.sha256()
    h.update(uses.encode())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    for d in dep_hashes:
        h.update(d.encode())
    # Files the user named directly are hashed by content; files inside the workdir were made by
    # earlier stages and are already covered by those stages' hashes.
    inside = Path(workdir).resolve()
    for value in params.values():
        if isinstance(value, str) and value and Path(value).exists():
            path = Path(value).resolve()
            if inside not in path.parents:
                h.update(_file_digest(path).encode())
    return h.hexdigest()[:16]


def override_params(spec: PipelineSpec, overrides: dict[str, dict[str, Any]]) -> PipelineSpec:
    """A copy of ``spec`` with some stages' ``with`` values replaced: ``{"sft": {"max_steps": 2}}``.

    The CLI's ``--set sft.max_steps=2,eval.n_prompts=8`` builds this mapping; tests use it to run a
    shipped pipeline at a tiny size. Unknown stage names are an error (a typo would silently do nothing).
    """
    names = {s.name for s in spec.stages}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"overrides name stages that are not in the pipeline: {unknown} (stages: {sorted(names)})")
    stages = [s.model_copy(update={"with_": {**s.with_, **overrides.get(s.name, {})}}) for s in spec.stages]
    return spec.model_copy(update={"stages": stages})


def parse_overrides(text: str) -> dict[str, dict[str, Any]]:
    """``"sft.max_steps=2,eval.n_prompts=8"`` -> ``{"sft": {"max_steps": 2}, "eval": {"n_prompts": 8}}``.

    Values are YAML (``{a: x, b: y}`` is a mapping; a comma splits items only before ``stage.field=``).
    """
    out: dict[str, dict[str, Any]] = {}
    for item in (i.strip() for i in OVERRIDE_SPLIT.split(text)):
        if not item:
            continue
        key, sep, value = item.partition("=")
        stage, dot, field = key.strip().partition(".")
        if not sep or not dot or not stage or not field:
            raise ValueError(f"override '{item}': expected stage.field=value")
        out.setdefault(stage, {})[field] = yaml.safe_load(value)
    return out


def run_pipeline(
    spec: PipelineSpec,
    registry: Mapping[str, StageFn | str] | None = None,
    only: list[str] | None = None,
    force: list[str] | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Run (or reuse) every stage; returns each stage's outputs by name.

    ``registry`` maps ``uses`` names to functions or "module:function" strings (default: the
    built-in :data:`~alignkit.pipeline.registry.STAGES`); ``python:`` targets work with any registry.
    """
    registry = STAGES if registry is None else registry
    for stage in spec.stages:  # fail on a bad name before any stage runs
        try:
            check_uses(stage.uses, registry)
        except StageNotFound as err:
            raise StageNotFound(f"stage '{stage.name}': {err}") from err
    workdir = Path(spec.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, dict[str, Any]] = {}
    hashes: dict[str, str] = {}
    total = len(spec.stages)
    for i, stage in enumerate(spec.stages, start=1):
        deps: set[str] = set()
        params = _substitute(stage.with_, outputs, hashes, deps, f"stage '{stage.name}'")
        params.setdefault("seed", spec.seed)
        digest = stage_hash(stage.uses, params, [hashes[d] for d in sorted(deps)], workdir)
        folder = workdir / stage.name
        marker = folder / STAGE_FILE
        prefix = f"[{i}/{total}] {stage.name} ({stage.uses})"
        if marker.exists() and not (force and stage.name in force):
            saved = json.loads(marker.read_text())
            if saved.get("hash") == digest:
                outputs[stage.name], hashes[stage.name] = saved["outputs"], digest
                echo(f"{prefix}: cached")
                continue
            log.info("%s: inputs changed (hash %s -> %s); rerunning", stage.name, saved.get("hash"), digest)
        if only and stage.name not in only:
            raise ValueError(f"stage '{stage.name}' is not cached but --only excludes it")
        params_file = folder / "params.json"
        if folder.exists() and params_file.exists() and json.loads(params_file.read_text()).get("hash") != digest:
            shutil.rmtree(folder)  # stale partial work from a different config: start clean
        folder.mkdir(parents=True, exist_ok=True)
        params_file.write_text(json.dumps({"hash": digest, "uses": stage.uses, "params": params}, indent=2, default=str))
        echo(f"{prefix}: running")
        started = time.perf_counter()
        try:
            fn = resolve_stage(stage.uses, registry)
        except ValueError as err:
            raise ValueError(f"stage '{stage.name}': {err}") from err
        result = fn(params, folder)
        elapsed = time.perf_counter() - started
        marker.write_text(json.dumps({"hash": digest, "outputs": result, "seconds": elapsed}, indent=2, default=str))
        outputs[stage.name], hashes[stage.name] = result, digest
        echo(f"{prefix}: done in {elapsed:.1f}s")
    return outputs
