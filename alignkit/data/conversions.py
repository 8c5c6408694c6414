"""Conversions between feedback shapes: rankings → pairs, ratings → pairs, pairs → binary.

Feedback arrives in whatever shape was cheapest to collect (a ranking of four answers, 1–7
ratings, a side-by-side choice), while each trainer wants one shape (reward models and DPO want
pairs, KTO wants binary labels). These functions bridge them without losing provenance: every
field a record carries beyond the ones consumed rides along into its outputs, and each output
names the record it came from (``pair_id``, ``ranking_id``) so a trainer can keep a ranking's
pairs in one batch and a held-out split can take whole groups.

Column names follow TRL: pairs ``prompt``/``chosen``/``rejected``, binary
``prompt``/``completion``/``label``, rankings ``prompt``/``completions`` (best first).

Ties are explicit, never broken by position (Open-Assistant's "pick the first" biased its data):
by default a tie yields no pair; with ``tie_policy="keep"`` it yields a pair with ``margin`` 0
and ``tie=True`` for trainers that model ties. Every pair output carries ``margin`` and ``tie``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

TiePolicy = Literal["drop", "keep"]

_PAIR_FIELDS = ("prompt", "chosen", "rejected")
_RANKING_CONSUMED = ("prompt", "completions", "scores", "ranks", "ties", "ranking_id")
_RATING_CONSUMED = ("prompt", "completion", "rating")


def _bad(index: int, field: str, expected: str) -> ValueError:
    return ValueError(f"record {index}: field '{field}' {expected}")


def _is_text(value: Any) -> bool:
    """A prompt/completion is a non-empty string or a non-empty list of chat messages."""
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, list) and len(value) > 0 and all(isinstance(m, Mapping) for m in value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _key(value: Any) -> str:
    """Hashable identity for a prompt or completion (strings or message lists)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _check_policy(tie_policy: str) -> None:
    if tie_policy not in ("drop", "keep"):
        raise ValueError(f"tie_policy must be 'drop' or 'keep', got {tie_policy!r}")


def _mapping(record: Any, index: int) -> Mapping[str, Any]:
    if not isinstance(record, Mapping):
        raise ValueError(f"record {index}: expected a dict, got {type(record).__name__}")
    return record


# --------------------------------------------------------------------------- pairs → binary


def pairs_to_binary(pairs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each pair becomes one desirable (``label=True``, the chosen completion) and one
    undesirable (``label=False``, the rejected one) binary record, in that order.

    Extra fields are copied to both; ``pair_id`` is the pair's own ``pair_id`` if it has one,
    else its index in ``pairs``. Pairs marked ``tie=True`` carry no preference and are skipped.
    """
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(pairs):
        pair = _mapping(raw, i)
        for field in _PAIR_FIELDS:
            if field not in pair:
                raise _bad(i, field, "is missing (a pair needs prompt, chosen and rejected)")
            if not _is_text(pair[field]):
                raise _bad(i, field, "must be a non-empty string or message list")
        if pair.get("tie"):
            continue
        extras = {k: v for k, v in pair.items() if k not in _PAIR_FIELDS}
        extras.setdefault("pair_id", i)
        for side, label in (("chosen", True), ("rejected", False)):
            out.append({**extras, "prompt": pair["prompt"], "completion": pair[side], "label": label})
    return out


# --------------------------------------------------------------------------- rankings → pairs


def _levels(ranking: Mapping[str, Any], index: int, n: int) -> tuple[list[float], list[float] | None]:
    """(rank level per completion, lower = better; scores if given) for a best-first ranking.

    Ties come from equal ``scores`` (higher = better), equal ``ranks`` (lower = better) or
    ``ties`` groups (lists of completion indices that are tied). Whatever the source, the
    levels must agree with the best-first order of ``completions``.
    """
    sources = [f for f in ("scores", "ranks", "ties") if ranking.get(f) is not None]
    if len(sources) > 1:
        raise _bad(index, sources[1], f"cannot be combined with '{sources[0]}' (give one way of expressing ties)")
    if not sources:
        return [float(j) for j in range(n)], None
    field = sources[0]
    value = ranking[field]
    if field in ("scores", "ranks"):
        if not isinstance(value, (list, tuple)) or len(value) != n or not all(_is_number(v) for v in value):
            raise _bad(index, field, f"must be a list of {n} numbers (one per completion)")
        levels = [-float(v) for v in value] if field == "scores" else [float(v) for v in value]
        if any(b < a for a, b in zip(levels, levels[1:])):
            order = "non-increasing" if field == "scores" else "non-decreasing"
            raise _bad(index, field, f"must be {order}: 'completions' are ordered best first, got {list(value)}")
        return levels, ([float(v) for v in value] if field == "scores" else None)
    # ties: groups of indices
    if not isinstance(value, (list, tuple)) or not all(isinstance(g, (list, tuple)) for g in value):
        raise _bad(index, "ties", "must be a list of groups (lists of completion indices)")
    levels = [float(j) for j in range(n)]
    seen: set[int] = set()
    for group in value:
        if not all(isinstance(j, int) and not isinstance(j, bool) and 0 <= j < n for j in group):
            raise _bad(index, "ties", f"groups must hold completion indices in [0, {n - 1}], got {list(group)}")
        members = sorted(set(group))
        if seen & set(members):
            raise _bad(index, "ties", f"index {sorted(seen & set(members))[0]} appears in two groups")
        seen |= set(members)
        if members and members != list(range(members[0], members[-1] + 1)):
            raise _bad(index, "ties", f"group {list(group)} is not contiguous in the best-first order")
        for j in members:
            levels[j] = float(members[0])
    return levels, None


def rankings_to_pairs(rankings: Iterable[Mapping[str, Any]], tie_policy: TiePolicy = "drop") -> list[dict[str, Any]]:
    """All ``k(k−1)/2`` pairs of each ranking (``completions`` ordered best first).

    Every pair carries ``ranking_id`` (the ranking's own ``ranking_id`` if present, else its
    index in ``rankings``) so trainers can score a ranking's responses once and keep its pairs
    in one batch; ``margin`` (score difference when the ranking has ``scores``, else the gap in
    rank levels); ``tie``; and the ranking's other fields. Tied completions (see ``_levels``)
    give no pair, or with ``tie_policy="keep"`` a pair with ``margin=0`` and ``tie=True``.
    Pairs come out ranking by ranking, better index first, in index order.
    """
    _check_policy(tie_policy)
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(rankings):
        ranking = _mapping(raw, i)
        if "prompt" not in ranking or not _is_text(ranking["prompt"]):
            raise _bad(i, "prompt", "must be a non-empty string or message list")
        completions = ranking.get("completions")
        if not isinstance(completions, (list, tuple)) or len(completions) < 2:
            raise _bad(i, "completions", "must be a list of at least 2 completions, best first")
        for j, c in enumerate(completions):
            if not _is_text(c):
                raise _bad(i, f"completions[{j}]", "must be a non-empty string or message list")
        keys = [_key(c) for c in completions]
        if len(set(keys)) != len(keys):
            dup = next(j for j, k in enumerate(keys) if keys.index(k) != j)
            raise _bad(i, f"completions[{dup}]", f"duplicates completions[{keys.index(keys[dup])}]")
        levels, scores = _levels(ranking, i, len(completions))
        extras = {k: v for k, v in ranking.items() if k not in _RANKING_CONSUMED}
        ranking_id = ranking.get("ranking_id", i)
        for a in range(len(completions)):
            for b in range(a + 1, len(completions)):
                tie = levels[a] == levels[b]
                if tie and tie_policy == "drop":
                    continue
                margin = 0.0 if tie else (scores[a] - scores[b] if scores is not None else levels[b] - levels[a])
                out.append(
                    {
                        **extras,
                        "prompt": ranking["prompt"],
                        "chosen": completions[a],
                        "rejected": completions[b],
                        "ranking_id": ranking_id,
                        "margin": margin,
                        "tie": tie,
                    }
                )
    return out


# --------------------------------------------------------------------------- ratings → pairs


def ratings_to_pairs(
    records: Iterable[Mapping[str, Any]], min_gap: float = 1, tie_policy: TiePolicy = "drop"
) -> list[dict[str, Any]]:
    """Pairs from absolute ratings of completions, within each prompt (records grouped by prompt).

    For two completions of the same prompt with ratings ``a > b``, ``a − b ≥ min_gap`` makes a
    pair (``chosen`` = the higher rated) with ``margin = a − b``; smaller positive gaps are
    dropped as noise. Equal ratings are ties: dropped, or with ``tie_policy="keep"`` kept with
    ``margin=0`` and ``tie=True`` (then ``chosen`` is the one seen first). Two records with the
    same completion never pair (aggregate repeated ratings first, e.g. in ``alignkit.feedback``).

    Extra fields equal in both records are carried as-is; differing ones as ``chosen_<field>``
    and ``rejected_<field>`` (so annotator ids and sources survive); ``chosen_rating`` and
    ``rejected_rating`` are always set. ``ranking_id`` is the prompt group's index (order of first
    appearance), so a trainer can batch one prompt's pairs together.
    """
    _check_policy(tie_policy)
    if not min_gap > 0:
        raise ValueError(f"min_gap must be > 0, got {min_gap}")
    groups: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    for i, raw in enumerate(records):
        record = _mapping(raw, i)
        for field in _RATING_CONSUMED:
            if field not in record:
                raise _bad(i, field, "is missing (a rating needs prompt, completion and rating)")
        for field in ("prompt", "completion"):
            if not _is_text(record[field]):
                raise _bad(i, field, "must be a non-empty string or message list")
        if not _is_number(record["rating"]):
            raise _bad(i, "rating", f"must be a number, got {record['rating']!r}")
        groups.setdefault(_key(record["prompt"]), []).append((i, record))

    out: list[dict[str, Any]] = []
    for group_id, members in enumerate(groups.values()):
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                first, second = members[x][1], members[y][1]
                if _key(first["completion"]) == _key(second["completion"]):
                    continue
                gap = float(first["rating"]) - float(second["rating"])
                tie = gap == 0
                if tie and tie_policy == "drop":
                    continue
                if not tie and abs(gap) < min_gap:
                    continue
                better, worse = (first, second) if gap >= 0 else (second, first)
                pair: dict[str, Any] = {}
                for field in sorted((set(better) | set(worse)) - set(_RATING_CONSUMED)):
                    if field in better and field in worse and better[field] == worse[field]:
                        pair[field] = better[field]
                    else:
                        if field in better:
                            pair[f"chosen_{field}"] = better[field]
                        if field in worse:
                            pair[f"rejected_{field}"] = worse[field]
                pair.update(
                    {
                        "prompt": better["prompt"],
                        "chosen": better["completion"],
                        "rejected": worse["completion"],
                        "chosen_rating": better["rating"],
                        "rejected_rating": worse["rating"],
                        "margin": abs(gap),
                        "tie": tie,
                        "ranking_id": group_id,
                    }
                )
                out.append(pair)
    return out


__all__ = ["pairs_to_binary", "rankings_to_pairs", "ratings_to_pairs"]
