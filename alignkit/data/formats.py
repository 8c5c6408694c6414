"""Every dataset shape people download, recognised and normalised to alignkit's columns.

alignkit's records use TRL's column names (``messages``; ``prompt``/``completion``;
``prompt``/``chosen``/``rejected``; ``prompt``/``completion``/``label``; ``prompt``/``completions``).
Real files come in more shapes than that, and the worst failure is a file that *loads* and trains
on the wrong text (UltraFeedback-binarized's prompt-repeated conversations trained with the
prompt twice). So each row is recognised here, before validation, as one of the shapes below and
rewritten to the canonical columns; a row that fits two readings, or none, is an error that
names the shape seen and how to convert it, never a guess.

===============================================  =====================================================
shape                                            becomes
===============================================  =====================================================
``messages`` (conversational language modeling)  SFT, unchanged
``text`` (standard language modeling)            SFT on the whole text (raw, no template)
``prompt`` + ``completion`` (str or messages)    SFT, unchanged (``label`` too: KTO binary)
``prompt`` + ``chosen`` + ``rejected``           pair, unchanged (explicit prompt)
``chosen`` + ``rejected`` only                   pair, prompt = their shared prefix (implicit prompt)
``prompt`` + conversations repeating it          pair, prompt = the shared turns, exactly one copy
HH-RLHF raw (``\\n\\nHuman: … \\n\\nAssistant: …``)   pair of conversations, every turn kept
``prompt`` + ``completions`` (best first)        ranking, unchanged
UltraFeedback (``instruction`` + rated
``completions``)                                 ranking by the mean aspect rating (or ratings rows)
===============================================  =====================================================

Implicit prompts follow TRL's ``extract_prompt``: the prompt is the longest common prefix of
``chosen`` and ``rejected`` (message by message for conversations). Two deliberate differences:
a string prefix is cut back to the last whitespace, so a word shared by both answers ("bl" of
"blue"/"black") is never split off into the prompt; and a conversational prefix is cut back so
that the answers start at an assistant turn.

This module is torch- and ``datasets``-free at import (``datasets`` is imported only to read a
saved folder), so configs may use :func:`default_eval_split`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["sft", "pair", "binary", "ranking", "prompt"]
Score = str  # "mean" (of the aspect ratings), "overall" (critique score) or one aspect's name


class ShapeError(ValueError):
    """A row whose shape is ambiguous or unknown: ``field`` and what to do about it.

    ``alignkit.data.io`` turns it into a :class:`~alignkit.data.io.DataError` with file and line.
    """

    def __init__(self, field: str | None, expected: str, seen: str | None = None) -> None:
        self.field, self.expected, self.seen = field, expected, seen
        body = f"expected {expected}, saw {seen}" if seen else expected
        super().__init__(f"{field}: {body}" if field else body)


@dataclass(frozen=True)
class Shape:
    """What a row looked like on disk (``name``) and the record kind it becomes."""

    name: str
    kind: Kind


_KNOWN = (
    "messages | text | prompt+completion | prompt+completion+label | prompt+chosen+rejected | "
    "chosen+rejected (implicit prompt) | prompt+completions | instruction+completions (UltraFeedback) | prompt alone"
)

# --------------------------------------------------------------------------- small predicates


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in value)


def _fmt(value: Any) -> str:
    return "conversational" if isinstance(value, list) else "standard"


def _kind_of_value(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if _is_messages(value):
        return "a message list"
    return f"a {type(value).__name__}"


def _msg(m: Mapping[str, Any]) -> tuple[Any, Any]:
    return (m.get("role"), m.get("content"))


# --------------------------------------------------------------------------- HH-RLHF raw

_HH_MARKER = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}
_HH_NAMES = {"user": "Human", "assistant": "Assistant"}


def is_hh(text: Any) -> bool:
    """A string in Anthropic HH-RLHF's raw shape (``\\n\\nHuman: …\\n\\nAssistant: …``)."""
    return isinstance(text, str) and text.startswith("\n\nHuman:") and "\n\nAssistant:" in text


def hh_to_messages(text: str) -> list[dict[str, str]]:
    """Split an HH-RLHF string into turns; :func:`messages_to_hh` gives the same string back.

    Each marker's one following space is the separator, not content; everything else (inner
    newlines, trailing spaces) is kept, so the conversion is lossless turn by turn.
    """
    if not text.startswith("\n\nHuman:"):
        raise ShapeError(None, "an HH-RLHF string starting with '\\n\\nHuman:'")
    parts = _HH_MARKER.split(text)
    # parts = ['', 'Human', ' q1', 'Assistant', ' a1', ...]
    messages = []
    for name, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": _HH_ROLES[name], "content": content[1:] if content.startswith(" ") else content})
    return messages


def messages_to_hh(messages: Iterable[Mapping[str, Any]]) -> str:
    """The HH-RLHF string of user/assistant turns (inverse of :func:`hh_to_messages`)."""
    out = []
    for m in messages:
        if m["role"] not in _HH_NAMES:
            raise ShapeError("role", f"user or assistant turns for HH-RLHF text, saw '{m['role']}'")
        out.append(f"\n\n{_HH_NAMES[m['role']]}: {m['content']}")
    return "".join(out)


# --------------------------------------------------------------------------- prompt extraction


def _shared_turns(chosen: list[Any], rejected: list[Any]) -> int:
    """Number of leading turns both conversations share, cut back so the answers start at an assistant turn."""
    n = 0
    while n < min(len(chosen), len(rejected)) and _msg(chosen[n]) == _msg(rejected[n]):
        n += 1
    while n > 0 and not (chosen[n:] and chosen[n].get("role") == "assistant"):
        n -= 1
    return n


def extract_prompt(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """``(prompt, chosen, rejected)`` from an implicit-prompt pair (TRL's convention, see module doc)."""
    if chosen == rejected:
        raise ShapeError("chosen", "'chosen' and 'rejected' are identical, so the pair carries no preference")
    if isinstance(chosen, str) and isinstance(rejected, str):
        n = 0
        while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
            n += 1
        if n < min(len(chosen), len(rejected)) or len(chosen) != len(rejected):
            # back off to the last whitespace so no shared word-start is cut off the answers
            while n > 0 and not chosen[n - 1].isspace() and not (n < len(chosen) and chosen[n].isspace()):
                n -= 1
            # the whitespace belongs to the answers (TRL: prompt "The sky is", chosen " blue.")
            while n > 0 and chosen[n - 1].isspace():
                n -= 1
        prompt = chosen[:n]
        if not prompt.strip():
            raise ShapeError(
                "prompt",
                "an implicit-prompt pair whose 'chosen' and 'rejected' start with a shared prompt; these strings share "
                "no prefix, so add a 'prompt' column (TRL explicit prompt)",
            )
        return prompt, chosen[n:], rejected[n:]
    n = _shared_turns(chosen, rejected)
    if n == 0:
        raise ShapeError(
            "prompt",
            "an implicit-prompt pair whose conversations share their first turns (the prompt); 'chosen' and "
            "'rejected' share none, so add a 'prompt' column with the context turns",
        )
    return [dict(m) for m in chosen[:n]], [dict(m) for m in chosen[n:]], [dict(m) for m in rejected[n:]]


def _strip_repeated(prompt: Any, sides: dict[str, Any], shape_name: str) -> tuple[Any, dict[str, Any]] | None:
    """If every side is a conversation that starts by repeating the prompt, the prompt once and the answers.

    ``None`` when the sides do not repeat the prompt (the normal explicit-prompt shape).
    """
    lists = list(sides.values())
    if not all(_is_messages(v) and v for v in lists) or not (isinstance(prompt, str) or _is_messages(prompt)):
        return None  # not conversations (or a malformed prompt): validation names the bad field
    starts_with_context = [v[0].get("role") != "assistant" for v in lists]
    if not any(starts_with_context):
        return None  # answers are assistant turns: nothing repeated
    if not all(starts_with_context):
        raise ShapeError(
            next(iter(sides)),
            f"{shape_name}: some answers start with the prompt turns and some with the answer; "
            "give every answer as only the assistant turn(s), or every one as the whole conversation",
        )
    if isinstance(prompt, str):
        first = lists[0][0]
        if not all(v[0].get("role") == "user" and str(v[0].get("content", "")).strip() == prompt.strip() for v in lists):
            raise ShapeError(
                "prompt",
                f"{shape_name}: 'prompt' is a string and the answers are conversations starting with a "
                f"'{first.get('role')}' turn that differs from it, so it is unclear which is the prompt; "
                "drop the 'prompt' column (the conversations' shared turns become the prompt) or give only the assistant turns",
            )
        n = 1
        while n < min(len(v) for v in lists) and all(_msg(v[n]) == _msg(lists[0][n]) for v in lists):
            n += 1
        while n > 1 and lists[0][n - 1].get("role") == "assistant":
            n -= 1  # the answers start at an assistant turn
        # a conversation's own user turn is kept (with its exact text); the string column was a copy of it
        new_prompt = [dict(m) for m in lists[0][:n]]
    else:
        n = len(prompt)
        if not all(len(v) > n and [_msg(m) for m in v[:n]] == [_msg(m) for m in prompt] for v in lists):
            raise ShapeError(
                "prompt",
                f"{shape_name}: the answers are conversations that do not start with the 'prompt' turns, so the prompt "
                "would be rendered twice or out of order; give only the assistant turn(s) as answers, or drop 'prompt'",
            )
        new_prompt = [dict(m) for m in prompt]
    out = {k: [dict(m) for m in v[n:]] for k, v in sides.items()}
    for k, v in out.items():
        if not v:
            raise ShapeError(k, f"{shape_name}: '{k}' holds only the prompt turns, with no answer after them")
    return new_prompt, out


# --------------------------------------------------------------------------- UltraFeedback

_UF_ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


def _uf_rating(value: Any) -> float | None:
    """A rating as a number; UltraFeedback writes them as strings and ``"N/A"`` for none."""
    if isinstance(value, Mapping):
        value = value.get("Rating")
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _uf_score(completion: Mapping[str, Any], score: Score) -> tuple[float | None, dict[str, float]]:
    annotations = completion.get("annotations") or {}
    aspects = {a: r for a, v in annotations.items() if (r := _uf_rating(v)) is not None}
    if score == "mean":
        if "fine-grained_score" in completion and _uf_rating(completion["fine-grained_score"]) is not None:
            return _uf_rating(completion["fine-grained_score"]), aspects
        return (sum(aspects.values()) / len(aspects) if aspects else None), aspects
    if score == "overall":
        return _uf_rating(completion.get("overall_score")), aspects
    return aspects.get(score), aspects


def is_ultrafeedback(row: Mapping[str, Any]) -> bool:
    comps = row.get("completions")
    return isinstance(comps, list) and bool(comps) and all(isinstance(c, Mapping) and "response" in c for c in comps)


def _uf_prompt(row: Mapping[str, Any]) -> Any:
    prompt = row.get("instruction", row.get("prompt"))
    if not (isinstance(prompt, str) and prompt.strip()) and not (_is_messages(prompt) and prompt):
        raise ShapeError("instruction", "UltraFeedback row: a non-empty 'instruction' (or 'prompt')")
    return prompt


def ultrafeedback_ratings(row: Mapping[str, Any], score: Score = "mean") -> list[dict[str, Any]]:
    """One rating record per rated completion: ``prompt``, ``completion``, ``rating``, ``aspects``, ``model``.

    These are the rows :func:`alignkit.data.conversions.ratings_to_pairs` reads.
    """
    prompt = _uf_prompt(row)
    out = []
    for c in row["completions"]:
        rating, aspects = _uf_score(c, score)
        if rating is None or not str(c.get("response", "")).strip():
            continue
        out.append({"prompt": prompt, "completion": c["response"], "rating": rating, "aspects": aspects, "model": c.get("model")})
    return out


def ultrafeedback_to_ranking(row: Mapping[str, Any], score: Score = "mean") -> dict[str, Any]:
    """A ranking (best first, ``scores`` non-increasing so ties stay ties) from an UltraFeedback row.

    ``score="mean"`` is the mean of the aspect ratings (UltraFeedback's ``fine-grained_score``,
    the score HuggingFaceH4's binarized version picks chosen by); ``"overall"`` is the critique's
    ``overall_score``; an aspect name ranks by that aspect alone. Unrated (``N/A``) or duplicate
    completions are left out; per-completion aspects and models ride along in the same order.
    """
    rated = []
    seen: set[str] = set()
    for r in ultrafeedback_ratings(row, score):
        if r["completion"] in seen:
            continue
        seen.add(r["completion"])
        rated.append(r)
    if len(rated) < 2:
        raise ShapeError("completions", f"UltraFeedback row: at least 2 distinct completions with a '{score}' rating")
    rated.sort(key=lambda r: -r["rating"])  # stable: equal scores keep file order, and stay ties
    extras = {k: v for k, v in row.items() if k not in ("instruction", "prompt", "completions")}
    return {
        **extras,
        "prompt": rated[0]["prompt"],
        "completions": [r["completion"] for r in rated],
        "scores": [r["rating"] for r in rated],
        "completion_aspects": [r["aspects"] for r in rated],
        "completion_models": [r["model"] for r in rated],
    }


# --------------------------------------------------------------------------- detection and normalisation


def detect_shape(row: Mapping[str, Any]) -> Shape:
    """The shape ``row`` is in (see the module table); raises :class:`ShapeError` if ambiguous or unknown."""
    # A null is an absent column: `datasets`/Parquet give every row every column of the file.
    keys = ("messages", "text", "prompt", "completion", "chosen", "rejected", "label", "completions")
    has = {k for k in keys if row.get(k) is not None}
    if "messages" in has and has & {"chosen", "rejected", "completion", "completions"}:
        clash = sorted(has & {"chosen", "rejected", "completion", "completions"})
        raise ShapeError(
            "messages",
            f"one shape per row, saw 'messages' (a whole conversation) together with {clash}; "
            "keep 'messages' for SFT, or prompt/chosen/rejected for preferences",
        )
    if "chosen" in has or "rejected" in has:
        if "completion" in has or "completions" in has:
            raise ShapeError(
                "completion",
                "one shape per row, saw 'chosen'/'rejected' (a pair) together with 'completion(s)'; "
                "use prompt/chosen/rejected for a pair, prompt/completion/label for binary feedback",
            )
        if not ("chosen" in has and "rejected" in has):
            missing = "rejected" if "chosen" in has else "chosen"
            raise ShapeError(missing, "a value (a pair needs both 'chosen' and 'rejected')", seen="no such field")
        chosen, rejected = row["chosen"], row["rejected"]
        if isinstance(chosen, list) != isinstance(rejected, list):
            raise ShapeError(
                "rejected",
                f"'chosen' is {_kind_of_value(chosen)} but 'rejected' is {_kind_of_value(rejected)}; "
                "give both as strings (standard) or both as message lists (conversational)",
            )
        if "prompt" not in has:
            if is_hh(chosen) and is_hh(rejected):
                return Shape("HH-RLHF raw (implicit prompt, '\\n\\nHuman:'/'\\n\\nAssistant:' strings)", "pair")
            return Shape(f"{_fmt(chosen)} preference, implicit prompt", "pair")
        prompt = row["prompt"]
        if is_hh(prompt):
            return Shape("HH-RLHF raw (explicit prompt)", "pair")
        if _is_messages(chosen) and chosen and chosen[0].get("role") != "assistant":
            return Shape(f"prompt-repeated conversations ({_fmt(prompt)} prompt, UltraFeedback-binarized style)", "pair")
        return Shape(f"{_fmt(chosen)} preference, explicit prompt", "pair")
    if "completions" in has:
        if is_ultrafeedback(row):
            return Shape("UltraFeedback (completions with per-aspect ratings)", "ranking")
        return Shape("ranking", "ranking")
    if "messages" in has:
        return Shape("conversational language modeling (messages)", "sft")
    if "completion" in has:
        if "label" in has:
            return Shape(f"{_fmt(row['completion'])} unpaired preference (binary)", "binary")
        return Shape(f"{_fmt(row['completion'])} prompt-completion", "sft")
    if "text" in has and "prompt" not in has:
        if isinstance(row["text"], str) and is_hh(row["text"]):
            raise ShapeError(
                "text",
                "an HH-RLHF conversation in a 'text' column is one side of a pair; give it as 'chosen' and its "
                "alternative as 'rejected' (HH-RLHF raw), or convert it to 'messages' for SFT",
            )
        return Shape("standard language modeling (text)", "sft")
    if "prompt" in has:
        return Shape(f"{_fmt(row['prompt'])} prompt-only", "prompt")
    raise ShapeError(None, f"a row in a known shape ({_KNOWN})", seen=f"columns {sorted(row)}")


def normalize_row(row: Mapping[str, Any], score: Score = "mean") -> dict[str, Any]:
    """``row`` in alignkit's canonical columns (other fields ride along); ambiguous rows raise :class:`ShapeError`."""
    shape = detect_shape(row)
    out = dict(row)
    if shape.name.startswith("HH-RLHF raw (implicit"):
        chosen, rejected = hh_to_messages(row["chosen"]), hh_to_messages(row["rejected"])
        out["prompt"], out["chosen"], out["rejected"] = extract_prompt(chosen, rejected)
        return out
    if shape.name.startswith("HH-RLHF raw (explicit"):
        prompt = hh_to_messages(row["prompt"])
        if prompt and prompt[-1]["role"] == "assistant" and not prompt[-1]["content"].strip():
            prompt = prompt[:-1]  # the open "\n\nAssistant:" the answers continue
        out["prompt"] = prompt
        for side in ("chosen", "rejected"):
            value = row[side]
            if is_hh(value):
                raise ShapeError(side, "HH-RLHF explicit prompt: answers continue the prompt, not a new conversation")
            out[side] = [{"role": "assistant", "content": value[1:] if value.startswith(" ") else value}]
        return out
    if shape.name.endswith("implicit prompt"):
        chosen, rejected = row["chosen"], row["rejected"]
        if (isinstance(chosen, str) and isinstance(rejected, str)) or (_is_messages(chosen) and _is_messages(rejected)):
            out["prompt"], out["chosen"], out["rejected"] = extract_prompt(chosen, rejected)
        return out  # other types: validation names the bad field
    if shape.name.startswith("prompt-repeated"):
        stripped = _strip_repeated(row["prompt"], {"chosen": row["chosen"], "rejected": row["rejected"]}, shape.name)
        if stripped is not None:
            out["prompt"], sides = stripped
            out.update(sides)
        return out
    if shape.kind in ("sft", "binary") and "prompt" in row and "completion" in row and _is_messages(row["completion"]):
        stripped = _strip_repeated(row["prompt"], {"completion": row["completion"]}, shape.name)
        if stripped is not None:
            out["prompt"], sides = stripped
            out.update(sides)
        return out
    if shape.name.startswith("UltraFeedback"):
        return ultrafeedback_to_ranking(row, score)
    return out


# --------------------------------------------------------------------------- `datasets` folders

EVAL_SPLITS = ("test", "validation")


def _dict_splits(path: Path) -> list[str] | None:
    meta = path / "dataset_dict.json"
    if not meta.is_file():
        return None
    try:
        splits = json.loads(meta.read_text(encoding="utf-8")).get("splits")
    except (OSError, ValueError):
        return None
    return [str(s) for s in splits] if isinstance(splits, list) else None


def default_eval_split(path: Path | str) -> Path | None:
    """The ``test`` (else ``validation``) split folder of a saved ``DatasetDict``, if it has one.

    Trainers evaluate on it when ``--eval-data`` is not given, instead of holding out a slice of
    ``train``. Reads only ``dataset_dict.json``, so it is cheap enough for config validation.
    """
    path = Path(path)
    splits = _dict_splits(path) or []
    for name in EVAL_SPLITS:
        if name in splits and (path / name).is_dir():
            return path / name
    return None


def train_split(ds: Any, path: Path) -> Any:
    """The split of a loaded ``save_to_disk`` folder to train on: a ``Dataset`` itself, or a ``DatasetDict``'s ``train``.

    A ``DatasetDict`` without ``train`` is used only if it has exactly one split; otherwise the
    error lists the splits so the user can point at one (``FOLDER/SPLIT`` is itself a dataset).
    Duck-typed (a dict of splits), so this module never imports ``datasets``.
    """
    if not isinstance(ds, Mapping):
        return ds
    if "train" in ds:
        return ds["train"]
    if len(ds) == 1:
        return next(iter(ds.values()))
    raise ShapeError(
        None,
        f"a DatasetDict with a 'train' split (or one split's folder, e.g. {path}/{next(iter(ds))})",
        seen=f"splits {list(ds)}",
    )


def prompt_of(row: Mapping[str, Any]) -> Any:
    """The prompt of a row in any shape (a pair's, an HH-RLHF conversation's, an UltraFeedback instruction), or None.

    For RL prompt readers: any preference file doubles as a prompt set.
    """
    if not isinstance(row, Mapping):
        return None
    try:
        return normalize_row(row).get("prompt")
    except ShapeError:
        return None
