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

import difflib
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
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from alignkit.data.errors import DataError, describe_value
from alignkit.pipeline.registry import STAGES, StageFn, StageNotFound, check_uses, resolve_stage, stage_fields

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

    # Where the spec came from, for error messages: the file and the line of each YAML node by path.
    _source: str = PrivateAttr("<pipeline>")
    _lines: dict[tuple[str, ...], int] = PrivateAttr(default_factory=dict)

    def where(self, *path: str | int) -> tuple[str, int | None]:
        """(file, line) of a node such as ``("stages", 2, "with", "lr")``, or of its nearest parent."""
        keys = tuple(str(p) for p in path)
        while keys and keys not in self._lines:
            keys = keys[:-1]
        return self._source, self._lines.get(keys)


def _node_lines(node: yaml.Node, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Line (1-based) of every mapping key / sequence item of a composed YAML document, by path."""
    out: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, str(key.value))
            out[path] = key.start_mark.line + 1
            out.update(_node_lines(value, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, str(i))
            out[path] = item.start_mark.line + 1
            out.update(_node_lines(item, path))
    return out


def load_pipeline(path: Path) -> PipelineSpec:
    """Read and validate a pipeline file; every problem is a :class:`DataError` naming the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "pipeline", "an existing YAML file", seen="a folder" if path.exists() else "nothing there")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            path, None, None, "UTF-8 text", seen=f"byte 0x{err.object[err.start]:02x} at offset {err.start}"
        ) from None
    try:
        raw = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise DataError(path, mark.line + 1 if mark else None, None, f"valid YAML ({problem})") from None
    lines = _node_lines(node) if node is not None else {}
    if not isinstance(raw, dict):
        raise DataError(
            path, None, None, "a mapping with 'stages:' (and optionally 'workdir:', 'seed:')", seen=describe_value(raw)
        )
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(str(p) for p in first["loc"])
        keys = loc
        while keys and keys not in lines:
            keys = keys[:-1]
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            expected, seen = "a known key (workdir, seed, stages; per stage: name, uses, with)", f"unknown key '{loc[-1]}'"
        elif first["type"] == "missing":
            expected, seen = "a value (required)", "none"
        else:
            expected, seen = (
                msg.removeprefix("Input should be ").removeprefix("String should "),
                describe_value(first.get("input")),
            )
        raise DataError(path, lines.get(keys), ".".join(loc) or None, expected, seen=seen) from None
    spec._source, spec._lines = str(path), lines
    names = [s.name for s in spec.stages]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        second = [i for i, n in enumerate(names) if n == duplicates[0]][1]
        raise DataError(
            path,
            lines.get(("stages", str(second), "name")),
            f"stages.{second}.name",
            "stage names that are unique",
            seen=f"repeated: {duplicates}",
        )
    return spec


def validate_pipeline(spec: PipelineSpec, registry: Mapping[str, StageFn | str]) -> None:
    """Check what can be checked before any stage runs, so a typo never costs an hour of training.

    Every ``${stage.key}`` must name an earlier stage (a reference to itself or a later one would be
    a cycle); a built-in stage's ``with:`` keys must be fields of its config and its literal values
    (those without references) must validate, each error naming the file, line and key.
    """
    earlier: set[str] = set()
    for i, stage in enumerate(spec.stages):
        for key, value in stage.with_.items():
            for ref in REF.finditer(json.dumps(value, default=str)):
                target = ref.group(1)
                if target not in earlier:
                    source, line = spec.where("stages", i, "with", key)
                    kind = (
                        "which is itself (a cycle)"
                        if target == stage.name
                        else "which runs later (a cycle: stages run in file order)"
                        if target in {s.name for s in spec.stages}
                        else "which is not in this pipeline"
                    )
                    raise DataError(
                        source,
                        line,
                        f"{stage.name}.{key}",
                        f"a reference to an earlier stage (one of {sorted(earlier) or 'none'})",
                        seen=f"'${{{target}.{ref.group(2)}}}', which refers to stage '{target}', {kind}",
                    )
        earlier.add(stage.name)
        if stage.uses not in STAGES or registry.get(stage.uses) != STAGES[stage.uses]:
            continue  # a user's own stage (or registry) decides what it accepts
        known = stage_fields(stage.uses)
        if known is None:
            continue
        cls, extra = known
        allowed = set(extra) | {"seed"} | (set(cls.model_fields) if cls is not None else set())
        for key in stage.with_:
            if key not in allowed:
                source, line = spec.where("stages", i, "with", key)
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise DataError(
                    source, line, f"{stage.name}.{key}", f"a setting of '{stage.uses}'{hint}", seen=f"unknown key '{key}'"
                )
        if cls is None:
            continue
        literal = {k: v for k, v in stage.with_.items() if k in cls.model_fields and not REF.search(json.dumps(v, default=str))}
        try:
            cls.model_validate(literal)
        except ValidationError as err:
            for e in err.errors():
                top = str(e["loc"][0]) if e["loc"] else ""
                if e["type"] == "missing" or top not in literal:
                    continue  # given by a reference, or filled in by the stage (output, progress)
                source, line = spec.where("stages", i, "with", top)
                expected = e["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
                raise DataError(
                    source,
                    line,
                    f"{stage.name}.{'.'.join(str(p) for p in e['loc'])}",
                    expected,
                    seen=describe_value(e.get("input")),
                ) from None


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
    for i, stage in enumerate(spec.stages):  # fail on a bad name before any stage runs
        try:
            check_uses(stage.uses, registry)
        except StageNotFound as err:
            source, line = spec.where("stages", i, "uses")
            at = f"{source}:{line}: " if line is not None else ""
            raise StageNotFound(f"{at}stage '{stage.name}': {err}") from err
    validate_pipeline(spec, registry)
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
