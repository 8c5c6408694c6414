"""Hand data to the engines teams move to at scale (verl, OpenRLHF), or to alignkit's own columns.

``alignkit data export --to ENGINE`` reads any shape :mod:`alignkit.data.formats` recognises and
writes what the engine's dataset class reads, so no one hand-writes a conversion script:

- ``verl``: a Parquet file with verl's RL columns (its ``RLHFDataset`` and reward managers):
  ``prompt`` as a chat list (``[{role, content}]``, verl applies the chat template itself),
  ``data_source`` (which ``compute_score`` to use), ``ability``, ``reward_model``
  ``{style, ground_truth}`` (``style="rule"`` when a ground truth is known, else ``"model"``) and
  ``extra_info`` ``{index, split, kind, prompt}``. Every record kind exports its prompt (a pair's or a
  ranking's prompt once); the copy in ``extra_info.prompt`` is there because verl calls
  ``compute_score`` without the prompt, and alignkit's rewards
  (:func:`alignkit.train.reward_adapters.verl_compute_score`) score a (prompt, response) pair.
- ``openrlhf``: JSONL with OpenRLHF's default keys, for ``--apply_chat_template``: prompts as
  ``input`` (chat list) and ``label`` (ground truth, for ``--label_key label`` and reward
  functions / ``--remote_rm_url``); pairs as ``prompt``/``chosen``/``rejected`` chat lists
  (``--prompt_key prompt --chosen_key chosen --rejected_key rejected``); SFT as
  ``input``/``output`` (``--input_key input --output_key output``), or whole ``messages``
  conversations under ``input`` with ``--multiturn``.
- ``alignkit``: canonical records as the trainers read them (HH-RLHF split into turns, implicit
  prompts extracted, UltraFeedback as rankings); ``pairs``: every pair (rankings expanded);
  ``ratings``: UltraFeedback as one ``prompt``/``completion``/``rating`` row per completion (what
  :func:`alignkit.data.conversions.ratings_to_pairs` reads).

:func:`check_export` reloads a written file with ``datasets`` and checks the columns the engine
reads, so an export that would fail in the engine fails here first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alignkit.data.conversions import rankings_to_pairs
from alignkit.data.formats import ShapeError, detect_shape, normalize_row, ultrafeedback_ratings
from alignkit.data.io import DataError, iter_rows, validate_row, write_records

Target = Literal["verl", "openrlhf", "alignkit", "pairs", "ratings"]

GROUND_TRUTH_FIELDS = ("ground_truth", "answer", "reference", "solution")


class ExportConfig(BaseModel):
    """``alignkit data export``: one file in any recognised shape, written for an engine."""

    model_config = ConfigDict(extra="forbid")

    data: Path = Field(
        ..., description="Input: .jsonl, .parquet or a `datasets` folder, in any shape `alignkit data inspect` knows."
    )
    to: Target = Field(..., description="verl (parquet), openrlhf (jsonl), alignkit (canonical records), pairs, ratings.")
    output: Path = Field(..., description="File to write (.parquet for verl; .jsonl or .parquet otherwise).")
    data_source: str = Field("alignkit", description="verl: the data_source column (selects the reward function).")
    ability: str = Field("alignment", description="verl: the ability column.")
    split: str = Field("train", description="verl: extra_info.split.")
    ground_truth_field: str | None = Field(
        None, description=f"Record field with the reference answer; default: the first of {', '.join(GROUND_TRUTH_FIELDS)}."
    )
    score: str = Field("mean", description="UltraFeedback: rank by mean aspect rating, 'overall', or one aspect's name.")
    on_bad_record: Literal["raise", "skip"] = Field("raise", description="Stop at the first bad record, or skip and report.")


def _chat(value: Any) -> list[dict[str, str]]:
    """A prompt or answer as a chat list with only role/content (what the engines' templates read)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]


def _answer(value: Any) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    return _chat(value)


def read_normalized(
    path: Path, on_error: str = "raise", score: str = "mean"
) -> tuple[list[dict[str, Any]], str, list[DataError]]:
    """``(rows, kind, skipped)``: every row in canonical columns, validated when it is a record kind.

    Unlike :func:`alignkit.data.io.read_records` this also accepts prompt-only rows (kind
    ``prompt``) and keeps UltraFeedback's raw rows available to ``--to ratings``.
    """
    rows: list[dict[str, Any]] = []
    skipped: list[DataError] = []
    kind: str | None = None
    for line, row in iter_rows(Path(path)):
        try:
            if isinstance(row, DataError):
                raise row
            try:
                shape = detect_shape(row)
                out = normalize_row(row, score)
            except ShapeError as err:
                raise DataError(path, line, err.field, err.expected, seen=err.seen) from None
            kind = kind or shape.kind
            if shape.kind != kind:
                raise DataError(path, line, None, f"{kind} rows like the first row", seen=f"a {shape.name} row")
            if kind != "prompt":
                validate_row(out, kind, path, line)
            elif not out.get("prompt"):
                raise DataError(path, line, "prompt", "a non-empty prompt", seen="an empty one")
        except DataError as err:
            if on_error == "raise":
                raise
            skipped.append(err)
            continue
        rows.append({"__raw__": row, **out})
    if not rows:
        raise DataError(path, None, None, "at least one valid record", seen=f"{len(skipped)} bad ones" if skipped else "no rows")
    return rows, kind or "sft", skipped


def _ground_truth(row: dict[str, Any], field: str | None) -> str | None:
    for name in (field,) if field else GROUND_TRUTH_FIELDS:
        if name and row.get(name) is not None:
            value = row[name]
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return None


def _prompts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per distinct prompt (pairs and rankings repeat them), first occurrence kept."""
    seen: set[str] = set()
    out = []
    for row in rows:
        key = json.dumps(row["prompt"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def _prompt_of(row: dict[str, Any]) -> list[dict[str, str]]:
    if "prompt" in row:
        return _chat(row["prompt"])
    msgs = row["messages"]  # a conversation: everything before its last assistant turn
    last = max(j for j, m in enumerate(msgs) if m["role"] == "assistant")
    return _chat(msgs[:last])


def to_verl(rows: list[dict[str, Any]], kind: str, config: ExportConfig) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in rows:
        prompt = _prompt_of(row)
        key = json.dumps(prompt, sort_keys=True)
        if key in seen:  # pairs and rankings repeat their prompt: one RL prompt each
            continue
        seen.add(key)
        truth = _ground_truth(row, config.ground_truth_field)
        if truth is None and kind == "sft" and isinstance(row.get("completion"), str):
            truth = row["completion"]  # a demonstration's answer is the reference
        out.append(
            {
                "data_source": config.data_source,
                "prompt": prompt,
                "ability": config.ability,
                "reward_model": {"style": "rule" if truth is not None else "model", "ground_truth": truth or ""},
                "extra_info": {"index": len(out), "split": config.split, "kind": kind, "prompt": prompt},
            }
        )
    return out


def to_openrlhf(rows: list[dict[str, Any]], kind: str, config: ExportConfig) -> list[dict[str, Any]]:
    if kind in ("pair", "ranking"):
        pairs = rankings_to_pairs(rows) if kind == "ranking" else [r for r in rows if not r.get("tie")]
        return [{"prompt": _chat(p["prompt"]), "chosen": _answer(p["chosen"]), "rejected": _answer(p["rejected"])} for p in pairs]
    if kind == "sft":
        return [
            {"input": _chat(r["messages"])}
            if r.get("messages")
            else {"input": _chat(r["prompt"]), "output": _answer(r["completion"])}
            for r in rows
        ]
    if kind == "binary":
        return [{"input": _chat(r["prompt"]), "output": _answer(r["completion"]), "label": bool(r["label"])} for r in rows]
    return [{"input": _chat(r["prompt"]), "label": _ground_truth(r, config.ground_truth_field) or ""} for r in _prompts(rows)]


def _strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "__raw__"} for r in rows]


def export(config: ExportConfig) -> dict[str, Any]:
    """Write ``config.data`` for ``config.to`` and check it; returns a summary (rows, kind, path, keys)."""
    rows, kind, skipped = read_normalized(config.data, config.on_bad_record, config.score)
    if config.to == "verl":
        if config.output.suffix.lower() != ".parquet":
            raise DataError(
                config.output, None, "output", "a .parquet file (verl reads Parquet)", seen=f"'{config.output.suffix}'"
            )
        out = to_verl(rows, kind, config)
    elif config.to == "openrlhf":
        out = to_openrlhf(rows, kind, config)
    elif config.to == "alignkit":
        out = _strip(rows)
    elif config.to == "pairs":
        if kind not in ("pair", "ranking"):
            raise DataError(
                config.data, None, None, "pairs, rankings or UltraFeedback rows to export as pairs", seen=f"{kind} rows"
            )
        out = rankings_to_pairs(_strip(rows)) if kind == "ranking" else _strip(rows)
    else:  # ratings
        raws = [r["__raw__"] for r in rows]
        if not all("completions" in r and detect_shape(r).name.startswith("UltraFeedback") for r in raws):
            raise DataError(config.data, None, "completions", "UltraFeedback rows (rated completions)", seen=f"{kind} rows")
        out = [rating for r in raws for rating in ultrafeedback_ratings(r, config.score)]
    write_records(config.output, out)
    keys = check_export(config.output, config.to, kind)
    return {"rows": len(out), "kind": kind, "skipped": len(skipped), "output": str(config.output), "columns": keys}


# --------------------------------------------------------------------------- checks


def _load(path: Path) -> Any:
    import datasets  # only needed to check a written export

    kind = "parquet" if path.suffix.lower() == ".parquet" else "json"
    return datasets.load_dataset(kind, data_files=str(path), split="train")


def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(set(m) >= {"role", "content"} for m in value)


def check_export(path: Path, target: str, kind: str) -> list[str]:
    """Reload ``path`` with ``datasets`` and check the columns ``target`` reads; returns the column names.

    verl: ``prompt`` a chat list, ``reward_model.ground_truth`` and ``.style``, ``data_source``,
    ``extra_info.index``. OpenRLHF: ``input`` a chat list (prompts, SFT) or ``prompt``/``chosen``/
    ``rejected`` chat lists (pairs). Raises :class:`DataError` naming the first missing column.
    """
    ds = _load(Path(path))
    columns = list(ds.column_names)

    def need(name: str, ok: Any, what: str) -> None:
        if name.split(".")[0] not in columns:
            raise DataError(path, None, name, f"a '{name}' column for {target}", seen=f"columns {columns}")
        for i, row in enumerate(ds):
            value = row
            for part in name.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if not ok(value):
                raise DataError(path, i + 1, name, what, seen=repr(value)[:60])

    if target == "verl":
        need("prompt", _is_chat, "a chat list of {role, content}")
        need("data_source", lambda v: isinstance(v, str) and bool(v), "a non-empty string")
        need("reward_model.ground_truth", lambda v: isinstance(v, str), "a string")
        need("reward_model.style", lambda v: v in ("rule", "model"), "'rule' or 'model'")
        need("extra_info.index", lambda v: isinstance(v, int), "an integer")
        need("extra_info.prompt", _is_chat, "a chat list of {role, content}")
    elif target == "openrlhf":
        if kind in ("pair", "ranking"):
            for name in ("prompt", "chosen", "rejected"):
                need(name, _is_chat, "a chat list of {role, content}")
        else:
            need("input", _is_chat, "a chat list of {role, content}")
            if kind == "prompt":
                need("label", lambda v: isinstance(v, str), "a string")
    return columns
