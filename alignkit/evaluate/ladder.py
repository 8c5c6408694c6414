"""``alignkit ratings --battles FILE``: Bradley–Terry and Elo ladders from a battles file (issue #20).

The file is FastChat's / Chatbot Arena's battle shape: one object per battle with ``model_a``,
``model_b`` and ``winner`` (``model_a``, ``model_b``, ``tie``; Arena's ``tie (bothbad)`` is a tie),
as JSONL or one JSON list; other fields (``criterion``, ``conv_metadata``, style counts) are kept.
The headline ladder is Bradley–Terry (ties as half-wins, dropped, or Davidson's model; optional
style covariates as Arena's style control); online Elo is a cross-check (its point is the
bootstrap median, so its interval contains it). Writes ``ratings.json``, ``ratings.md`` (the table)
and ``ratings.png`` (the plot).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from alignkit.data.errors import DataError, describe_value
from alignkit.data.files import atomic_write_bytes, atomic_write_text
from alignkit.data.io import read_jsonl_objects
from alignkit.evaluate.config import RatingsConfig
from alignkit.evaluate.ratings import WINNERS, BradleyTerry, EloRating, StyleControlledBT, pair_counts
from alignkit.evaluate.report import RatingRow, ladder_plot_png, ladder_rows

ARENA_TIES = {"tie (bothbad)": "tie", "tie(bothbad)": "tie"}


def read_battles(path: str | Path) -> list[dict[str, Any]]:
    """Battles from JSONL or a JSON list; every record checked, errors as ``FILE:LINE: FIELD: expected…``."""
    path = Path(path)
    text_start = path.read_text(encoding="utf-8", errors="replace")[:1].strip() if path.is_file() else ""
    if text_start == "[":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(path, err.lineno, None, f"a JSON list of battles ({err.msg})") from None
        numbered: list[tuple[int | None, Any]] = [(None, r) for r in rows]
    else:
        numbered = list(read_jsonl_objects(path))
    out = []
    for k, (line, row) in enumerate(numbered):
        where = line if line is not None else None
        if not isinstance(row, dict):
            raise DataError(path, where, f"battle {k}", "an object with model_a, model_b, winner", seen=describe_value(row))
        for field in ("model_a", "model_b", "winner"):
            if not isinstance(row.get(field), str) or not row[field]:
                raise DataError(path, where, field, "a non-empty string", seen=describe_value(row.get(field)))
        row = dict(row)
        row["winner"] = ARENA_TIES.get(row["winner"], row["winner"])
        if row["winner"] not in WINNERS:
            raise DataError(path, where, "winner", f"one of {', '.join(WINNERS)}", seen=describe_value(row["winner"]))
        if row["model_a"] == row["model_b"]:
            raise DataError(path, where, "model_b", "a different model from model_a", seen=describe_value(row["model_b"]))
        out.append(row)
    return out


def _table(ladders: dict[str, list[RatingRow]], counts: dict[str, int]) -> str:
    lines = []
    for name, rows in ladders.items():
        lines += [f"## {name}", "", "| # | model | rating | CI | battles |", "|---|---|---|---|---|"]
        for i, r in enumerate(rows, 1):
            ci = "–" if r.ci_low is None or not math.isfinite(r.ci_low) else f"{r.ci_low:.1f} – {r.ci_high:.1f}"
            lines.append(f"| {i} | {r.model} | {r.rating:.1f} | {ci} | {counts.get(r.model, 0)} |")
        lines.append("")
    return "\n".join(lines)


def compute_ratings(battles: list[dict[str, Any]], config: RatingsConfig) -> dict[str, Any]:
    """Every ladder of ``config`` on ``battles`` as a JSON-able dict (what ``ratings.json`` holds)."""
    pc = pair_counts(battles, config.criterion)
    counts = {m: 0 for m in pc.models}
    for a, b, c in zip(pc.ia, pc.ib, pc.count):
        counts[pc.models[a]] += int(c)
        counts[pc.models[b]] += int(c)
    ladders: dict[str, list[RatingRow]] = {}
    extra: dict[str, Any] = {}
    features = [f.strip() for f in (config.style or "").split(",") if f.strip()]
    if features:
        sc = StyleControlledBT(features=features, criterion=config.criterion, anchor=config.anchor)
        sc.bootstrap(battles, config.rounds, config.seed, config.ci) if config.rounds else sc.fit(battles)
        ladders["Bradley-Terry (style-controlled)"] = ladder_rows(sc)
        extra["style_coefficients"] = sc.style_coef_
    bt = BradleyTerry(ties=config.ties, criterion=config.criterion, anchor=config.anchor)
    bt.bootstrap_counts(pc, config.rounds, config.seed, config.ci) if config.rounds else bt.fit_counts(pc)
    ladders["Bradley-Terry"] = ladder_rows(bt)
    if bt.tie_param_ is not None:
        extra["davidson_tie_param"] = bt.tie_param_
    if config.elo:
        elo = EloRating(k=config.elo_k, criterion=config.criterion, anchor=config.anchor)
        rounds = config.rounds if config.elo_rounds is None else config.elo_rounds
        elo.bootstrap(battles, rounds, config.seed, config.ci) if rounds else elo.fit(battles)
        ladders["Elo"] = ladder_rows(elo)
    headline = next(iter(ladders))
    return {
        "battles": pc.n,
        "criterion": config.criterion,
        "ties": config.ties,
        "headline": headline,
        "ci_level": config.ci,
        "bootstrap_rounds": config.rounds,
        "battles_per_model": counts,
        "ladders": {k: [r.model_dump() for r in v] for k, v in ladders.items()},
        **extra,
    }


def run_ratings(config: RatingsConfig) -> Path:
    """Read the battles, fit the ladders, write ratings.json / ratings.md / ratings.png; returns the folder."""
    battles = read_battles(config.battles)
    result = compute_ratings(battles, config)
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    ladders = {k: [RatingRow(**r) for r in v] for k, v in result["ladders"].items()}
    atomic_write_text(out / "ratings.json", json.dumps(result, indent=2))
    note = (
        f"{result['battles']} battles (criterion {config.criterion}); headline: {result['headline']}; "
        f"{config.ci:.0%} bootstrap CIs.\n\n"
    )
    atomic_write_text(out / "ratings.md", note + _table(ladders, result["battles_per_model"]))
    head = result["headline"]
    atomic_write_bytes(out / "ratings.png", ladder_plot_png(head, ladders[head]))
    return out
