"""``alignkit feedback init|import|assign|submit|export|quality|aggregate|simulate``."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

import typer
import yaml

from alignkit.cli.common import config_command, load
from alignkit.data.errors import DataError, describe_value
from alignkit.data.io import read_jsonl_objects, write_records
from alignkit.feedback.cli_configs import (
    AggregateConfig,
    AnnotatorsConfig,
    AssignConfig,
    ExportConfig,
    ImportConfig,
    InitConfig,
    QualityConfig,
    SubmitConfig,
)
from alignkit.feedback.config import ProjectConfig, preference_project, sft_project
from alignkit.sandbox.config import SimulateConfig

# The store (SQLAlchemy, Alembic) takes about a second to import: commands load it when they run.
STORE = "alignkit.feedback.store:FeedbackStore"


def _store(db: str):
    return load(STORE)(db)


def _fail(err: Exception) -> NoReturn:
    """Hand the error to the CLI's one error style (cli/common.py: bad input exits 2, a failed run 1)."""
    raise err


def _init(cfg) -> None:
    store = _store(cfg.db)
    typer.echo(f"store ready: {cfg.db}")
    if cfg.project:
        if cfg.template == "custom":
            if not cfg.project_file:
                _fail(ValueError("--template custom needs --project-file"))
            project = ProjectConfig.model_validate(yaml.safe_load(Path(cfg.project_file).read_text()) or {})
        elif cfg.template == "sft":
            project = sft_project(cfg.overlap)
        else:
            project = preference_project(cfg.overlap, cfg.max_overlap, cfg.gold_rate)
        store.create_project(cfg.project, project, exist_ok=True)
        typer.echo(f"project {cfg.project}: stages {[s.name for s in project.stages]}")


def _import(cfg) -> None:
    """Idempotent: rows already in the project (same content) are counted, not added again. Bad
    input (BOM and CRLF are fine) is a one-line error naming the file, line and field (exit 2)."""
    advance, import_items = load("alignkit.feedback.workflow:advance"), load("alignkit.feedback.workflow:import_items")
    rows = read_jsonl_objects(cfg.input)  # (line, object); an empty file or a bad line raises DataError
    store = _store(cfg.db)
    counts = import_items(
        store,
        cfg.project,
        rows,
        stage=cfg.stage,
        gold_fraction=cfg.gold_fraction,
        seed=cfg.seed,
        source=cfg.input,
        on_bad_row=cfg.on_bad_row,
    )
    created = advance(store, cfg.project)
    for spec in (cfg.annotators or "").split(","):
        if spec.strip():  # name[:role[:status]]; annotators start as screening candidates when there is gold
            name, role, status = (spec.strip().split(":") + ["", ""])[:3]
            role = role or "annotator"
            status = status or store.default_status(cfg.project, role)
            store.add_annotator(name, role=role, status=status, exist_ok=True, project=cfg.project)
    for message in counts.pop("rejected_rows", []):
        typer.echo(f"rejected: {message}", err=True)
    typer.echo(json.dumps({**counts, "tasks_by_stage": created}))


def _annotators(cfg) -> None:
    """People of a project, with their role and screening state there (both are per project)."""
    store = _store(cfg.db)
    if cfg.action == "add":
        names = [n.strip() for n in (cfg.names or "").split(",") if n.strip()]
        if not names:
            raise ValueError("names: expected one or more comma-separated names, saw none")
        status = store.default_status(cfg.project, cfg.role) if cfg.status == "auto" else cfg.status
        for name in names:
            store.add_annotator(name, role=cfg.role, status=status, exist_ok=True, project=cfg.project)
    for p in store.people(cfg.project).values():
        typer.echo(json.dumps({"name": p.name, "role": p.role, "status": p.status, "super_rater": p.super_rater}))


def _assign(cfg) -> None:
    store = _store(cfg.db)
    for _ in range(cfg.n):
        try:
            view = store.next_task(cfg.project, cfg.annotator, stage=cfg.stage)
        except ValueError as err:
            _fail(err)
        if view is None:
            typer.echo("no task available", err=True)
            break
        typer.echo(json.dumps(asdict(view), default=str))


def _submit(cfg) -> None:
    """All or nothing: every row is checked, then all are stored in one transaction (a refused row
    stores none). Each row carries an idempotency key made from its content, so running the same
    file again after it was stored adds nothing and says so."""
    rows = read_jsonl_objects(cfg.input)
    batch = []
    for line, row in rows:
        for field, kind in (("annotator", str), ("task_id", int), ("answer", dict)):
            value = row.get(field)
            if not isinstance(value, kind) or isinstance(value, bool):
                expected = {"annotator": "a name (string)", "task_id": "a task id (integer)", "answer": "an answer object"}
                raise DataError(cfg.input, line, field, expected[field], seen=describe_value(value))
        key = "file:" + hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:40]
        batch.append((row["annotator"], row["task_id"], row["answer"], key))
    store = _store(cfg.db)
    try:
        new = store.submit_many(batch)
    except ValueError as err:
        line = rows[getattr(err, "row", 0)][0]
        raise DataError(
            cfg.input, line, None, f"not stored: {err}; nothing from this file was stored (fix the row, then run the file again)"
        ) from None
    typer.echo(f"stored {sum(new)} answers ({len(new) - sum(new)} already stored by an earlier run of this file)")


def _export(cfg) -> None:
    export_dataset = load("alignkit.feedback.export:export_dataset")
    try:
        path, n = export_dataset(
            _store(cfg.db),
            cfg.project,
            cfg.kind,
            cfg.output,
            stage=cfg.stage,
            method=cfg.method,
            min_agreement=cfg.min_agreement,
            min_confidence=cfg.min_confidence,
        )
    except ValueError as err:
        _fail(err)
    typer.echo(f"wrote {n} {cfg.kind} records to {path}")


def _quality(cfg) -> None:
    q = load("alignkit.feedback.quality")
    store = _store(cfg.db)
    if cfg.screen:
        typer.echo(
            "screening: "
            + json.dumps(
                q.screen(
                    store,
                    cfg.project,
                    cfg.threshold,
                    cfg.chance,
                    cfg.false_admit,
                    max_gold=cfg.max_gold,
                    rule=cfg.rule,
                    exclude_below=cfg.exclude_below,
                    probation_after=cfg.probation_after,
                )
            )
        )
    if cfg.flag_spammers:
        typer.echo("flagged: " + json.dumps(q.flag_spammers(store, cfg.project)))
    if cfg.super_raters:
        typer.echo("super raters: " + json.dumps(q.update_super_raters(store, cfg.project)))
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    typer.echo(f"{'annotator':<16}{'status':<10}{'super':<7}{'judged':>7}{'gold':>6}{'gold_acc':>10}{'peer_agr':>10}")
    for r in q.annotator_quality(store, cfg.project):
        typer.echo(
            f"{r.annotator:<16}{r.status:<10}{str(r.super_rater):<7}{r.n_judgments:>7}{r.n_gold:>6}"
            f"{fmt(r.gold_accuracy):>10}{fmt(r.peer_agreement):>10}"
        )
    typer.echo("agreement: " + json.dumps(q.agreement_report(store, cfg.project)))


def _aggregate(cfg) -> None:
    aggregate_stage = load("alignkit.feedback.export:aggregate_stage")
    try:
        aggs = aggregate_stage(_store(cfg.db), cfg.project, cfg.stage, cfg.method)
    except (ValueError, KeyError) as err:
        _fail(err)
    rows = [a.model_dump() for a in aggs.values()]
    if cfg.output:
        write_records(cfg.output, rows)
        typer.echo(f"wrote {len(rows)} labels to {cfg.output}")
    typer.echo(
        json.dumps(
            {
                "tasks": len(rows),
                "labels": dict(Counter(str(a.label) for a in aggs.values())),
                "mean_confidence": round(sum(a.confidence for a in aggs.values()) / max(len(rows), 1), 4),
            }
        )
    )


def _simulate(cfg) -> None:
    result = load("alignkit.sandbox.simulate:simulate")(cfg)
    typer.echo(json.dumps(result.model_dump(exclude={"quality"}), indent=1))


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Human feedback: store, tasks, assignment, quality control, aggregation, export.", no_args_is_help=True
    )
    config_command(sub, "init", InitConfig, _init, help="Create/upgrade the store (runs the migrations) and a project.")
    config_command(sub, "import", ImportConfig, _import, help="Import prompts/responses/pairs (JSONL) and create tasks.")
    config_command(
        sub,
        "annotators",
        AnnotatorsConfig,
        _annotators,
        help="annotators add|list: add people to a project (role, screening state there) or list them.",
        argument="action",
    )
    config_command(sub, "assign", AssignConfig, _assign, help="Lease the next task(s) to an annotator; prints them as JSON.")
    config_command(sub, "submit", SubmitConfig, _submit, help="Store answers from JSONL (annotator, task_id, answer).")
    config_command(sub, "export", ExportConfig, _export, help="Aggregate and write training data with provenance.")
    config_command(sub, "quality", QualityConfig, _quality, help="Annotator quality; screening, spammer flags, super raters.")
    config_command(sub, "aggregate", AggregateConfig, _aggregate, help="One label per task (majority or Dawid-Skene).")
    config_command(
        sub, "simulate", SimulateConfig, _simulate, help="Let the sandbox's simulated crowd work a project end to end."
    )
    app.add_typer(sub, name="feedback")
