"""Expert benchmarks: criteria and rubric from a lead, prompts and reference answers from experts
through the feedback store, a frozen versioned file, and per-criterion judge scores with CIs.

1. ``create``: a spec (name, version, criteria with their rubrics, guidelines) becomes a feedback
   project with the store's own writing stages: ``write_prompt`` (experts write prompts) →
   ``verify_prompt`` → ``write_completion`` (reference answers) → ``review_completion``. The spec
   rides in the project's config, so the store is the one record of what was asked.
2. ``freeze``: every accepted prompt with an accepted (or review-edited) reference becomes an item;
   the file's name carries the spec's version and the first 12 hex digits of the SHA-256 of its
   canonical JSON (``NAME-vVERSION-HASH.json``), so a result names exactly the items it was scored
   on, and :func:`load_benchmark` refuses a file whose content no longer matches its name.
3. ``run``: each model answers every item; a judge grades each answer once per criterion with that
   criterion's rubric and the reference answer quoted (MT-Bench's reference-guided grading,
   Zheng et al. 2023); a model's criterion score is its mean expected grade (1..5) with a
   bootstrap 95 % interval over items.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from alignkit.ai.backend import ChatBackend
from alignkit.evaluate.stats import bootstrap_mean_interval
from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.export import build_records
from alignkit.feedback.store import FeedbackStore
from alignkit.monitor.judge import grade_distributions, grade_prompt


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    rubric: str = Field(min_length=1, description="What a 5 and a 1 look like on this criterion.")


class BenchmarkSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: int = Field(1, ge=1)
    domain: str = "general"
    criteria: list[Criterion] = Field(min_length=1)
    guidelines: str = ""


def benchmark_project(spec: BenchmarkSpec, overlap: int = 1) -> ProjectConfig:
    payload = {"benchmark": spec.model_dump()}
    return ProjectConfig(
        stages=[
            StageConfig(name="write_prompt", task_type="write_prompt", input="none", overlap=1, payload=payload),
            StageConfig(name="verify", task_type="verify_prompt", input="new_prompts", overlap=overlap),
            StageConfig(name="reference", task_type="write_completion", input="accepted_prompts", overlap=1),
            StageConfig(
                name="review", task_type="review_completion", input="pending_responses", overlap=overlap, role="reviewer"
            ),
        ],
        guidelines=spec.guidelines or f"Write {spec.domain} prompts and reference answers for the benchmark {spec.name}.",
    )


def create_benchmark(store: FeedbackStore, project: str, spec: BenchmarkSpec, n_prompts: int, overlap: int = 1) -> list[int]:
    """Create the project and ``n_prompts`` prompt-writing tasks; returns their ids."""
    store.create_project(project, benchmark_project(spec, overlap))
    return [store.add_task(project, "write_prompt") for _ in range(n_prompts)]


def project_spec(store: FeedbackStore, project: str) -> BenchmarkSpec:
    _, cfg = store.project(project)
    return BenchmarkSpec.model_validate(cfg.stage("write_prompt").payload["benchmark"])


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(content).encode()).hexdigest()


def freeze_benchmark(store: FeedbackStore, project: str, folder: str | Path) -> Path:
    """Write the frozen benchmark file; the same content always gets the same name (and is not rewritten)."""
    spec = project_spec(store, project)
    refs = build_records(store, project, "sft", method="majority")
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for r in refs:
        if r["prompt"] in seen:
            continue  # one reference per prompt: the first accepted one
        seen.add(r["prompt"])
        items.append(
            {
                "id": f"item-{len(items) + 1:04d}",
                "prompt": r["prompt"],
                "reference": r["completion"],
                "author": r.get("author"),
                "reviewers": r.get("annotator_ids", []),
                "edited": bool(r.get("edited")),
            }
        )
    if not items:
        raise ValueError(f"project {project!r} has no accepted prompt with an accepted reference answer yet")
    content = {
        "name": spec.name,
        "version": spec.version,
        "domain": spec.domain,
        "criteria": [c.model_dump() for c in spec.criteria],
        "items": items,
    }
    digest = content_hash(content)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}-v{spec.version}-{digest[:12]}.json"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**content, "sha256": digest}, indent=2, ensure_ascii=False))
        tmp.replace(path)
    return path


_NAME = re.compile(r"-v(\d+)-([0-9a-f]{12})\.json$")


def load_benchmark(path: str | Path) -> dict[str, Any]:
    """Read a frozen benchmark and check its content against the hash in its name."""
    path = Path(path)
    data = json.loads(path.read_text())
    digest = content_hash({k: v for k, v in data.items() if k != "sha256"})
    m = _NAME.search(path.name)
    if m is None or not digest.startswith(m.group(2)) or data.get("sha256") != digest:
        raise ValueError(f"{path}: content does not match the hash in its name (edited after freezing?); freeze it again")
    return data


def score_answers(
    backend: ChatBackend, bench: dict[str, Any], answers: Mapping[str, Sequence[str]], n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Per model and criterion: mean expected grade with a bootstrap 95 % CI, plus per-item grades."""
    items = bench["items"]
    out: dict[str, Any] = {"benchmark": f"{bench['name']}-v{bench['version']}", "sha256": bench.get("sha256"), "models": {}}
    for model, texts in answers.items():
        if len(texts) != len(items):
            raise ValueError(f"model {model!r}: {len(texts)} answers for {len(items)} items")
        per: dict[str, Any] = {}
        for crit in bench["criteria"]:
            prompts = [
                grade_prompt(it["prompt"], t, crit["rubric"], crit["name"], it["reference"]) for it, t in zip(items, texts)
            ]
            grades = [sum((g + 1) * p for g, p in enumerate(d)) for d in grade_distributions(backend, prompts)]
            lo, hi = bootstrap_mean_interval(grades, n_boot=n_boot, seed=seed)
            per[crit["name"]] = {
                "mean": sum(grades) / len(grades),
                "ci_low": lo,
                "ci_high": hi,
                "n": len(grades),
                "grades": grades,
            }
        out["models"][model] = per
    return out


def run_models(
    bench: dict[str, Any], models: dict[str, str], generate_fn: Callable[[str, list[str]], list[str]]
) -> dict[str, list[str]]:
    """Answers of each model (``name -> path``) to every item, through ``generate_fn(path, prompts)``."""
    prompts = [it["prompt"] for it in bench["items"]]
    return {name: generate_fn(path, prompts) for name, path in models.items()}
