"""``alignkit data inspect``: what a file is, and its first example exactly as the model will see it.

A dataset in the wrong shape usually trains without error, on the wrong text. So before a run
the user can see the detected shape, the record kind it becomes, and one example rendered with
the model's own chat template and tokenized through the trainers' path
(:mod:`alignkit.data.chat`), with the loss mask drawn in: target tokens (what the loss covers)
are wrapped in ``⟦…⟧``; everything else is context.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alignkit.data.chat import Encoded, encode_example, encode_prompt, encode_sft_record
from alignkit.data.conversions import rankings_to_pairs
from alignkit.data.export_engines import read_normalized
from alignkit.data.formats import detect_shape

OPEN, CLOSE = "⟦", "⟧"


class InspectConfig(BaseModel):
    """``alignkit data inspect FILE``."""

    model_config = ConfigDict(extra="forbid")

    data: Path = Field(..., description="The file or `datasets` folder to inspect.")
    model: str = Field("tiny", description="Whose tokenizer and chat template to render with: a local folder, or 'tiny'.")
    allow_download: bool = Field(False, description="Allow fetching --model's tokenizer from the hub.")
    chat_template: Path | None = Field(None, description="A Jinja chat template file to render with instead of the model's.")
    template: Literal["chat", "raw"] = Field("chat", description="Render with the chat template, or raw prompt+completion text.")
    max_length: int = Field(512, gt=8, description="Truncate like the trainers do (tokens per sequence).")
    index: int = Field(0, ge=0, description="Which example to show (0 = the first).")


def show_mask(tokenizer: Any, encoded: Encoded) -> str:
    """The decoded sequence with each run of target tokens wrapped in ⟦…⟧ (runs are decoded whole, so bytes stay joined)."""
    out: list[str] = []
    start = 0
    ids, mask = encoded.input_ids, encoded.loss_mask
    for i in range(1, len(ids) + 1):
        if i == len(ids) or mask[i] != mask[start]:
            text = tokenizer.decode(ids[start:i], skip_special_tokens=False)
            out.append(f"{OPEN}{text}{CLOSE}" if mask[start] else text)
            start = i
    return "".join(out)


def _sequences(tokenizer: Any, row: dict[str, Any], kind: str, config: InspectConfig) -> list[tuple[str, Encoded | list[int]]]:
    t, n = config.template, config.max_length
    if kind == "sft":
        return [("example", encode_sft_record(tokenizer, row, n, t))]
    if kind == "pair":
        return [(side, encode_example(tokenizer, row["prompt"], row[side], n, t)) for side in ("chosen", "rejected")]
    if kind == "ranking":
        pair = rankings_to_pairs([row], tie_policy="keep")[0]
        return [
            (f"{side} (first pair of the ranking)", encode_example(tokenizer, pair["prompt"], pair[side], n, t))
            for side in ("chosen", "rejected")
        ]
    if kind == "binary":
        label = "desirable" if row["label"] else "undesirable"
        return [(f"completion ({label})", encode_example(tokenizer, row["prompt"], row["completion"], n, t))]
    return [("prompt (generation starts after it)", encode_prompt(tokenizer, row["prompt"], t))]


def inspect_file(config: InspectConfig, tokenizer: Any) -> str:
    """The report ``alignkit data inspect`` prints: shape, kind, counts and the rendered example."""
    rows, kind, skipped = read_normalized(config.data, "skip")
    if config.chat_template is not None:
        tokenizer.chat_template = Path(config.chat_template).read_text(encoding="utf-8")
    row = rows[min(config.index, len(rows) - 1)]
    raw = row.pop("__raw__")
    shape = detect_shape(raw)
    lines = [
        f"file:   {config.data}",
        f"shape:  {shape.name}",
        f"kind:   {kind} ({len(rows)} valid row(s), {len(skipped)} bad)",
    ]
    if skipped:
        lines.append(f"first bad row: {skipped[0]}")
    lines.append(f"model:  {config.model} (template: {config.template}); {OPEN}…{CLOSE} marks the tokens the loss covers")
    for name, seq in _sequences(tokenizer, row, kind, config):
        lines.append("")
        if isinstance(seq, Encoded):
            lines.append(f"--- {name}: {len(seq)} tokens, {sum(seq.loss_mask)} trained on")
            lines.append(show_mask(tokenizer, seq))
        else:
            lines.append(f"--- {name}: {len(seq)} tokens")
            lines.append(tokenizer.decode(seq, skip_special_tokens=False))
    return "\n".join(lines)
