"""Records in, records out: formats round-trip, extras ride along, bad input is located precisely."""

from __future__ import annotations

import json

import pytest

from alignkit.data import DataError, detect_kind, read_records, write_records

ROWS = [
    {"prompt": "p1", "chosen": "good", "rejected": "bad", "annotator": "a1", "criteria": {"harmless": "chosen"}},
    {"prompt": "p2", "chosen": "fine", "rejected": "worse", "annotator": "a2", "criteria": {"harmless": "tie"}},
]


@pytest.mark.parametrize("name", ["pairs.jsonl", "pairs.parquet", "pairs_ds"])
def test_roundtrip_keeps_extra_fields(tmp_path, name):
    path = write_records(tmp_path / name, ROWS)
    loaded = read_records(path)
    assert loaded.kind == "pair"
    assert loaded.records == ROWS


def test_kind_detection_follows_trl_columns():
    assert detect_kind({"messages": [{"role": "user", "content": "x"}]}) == "sft"
    assert detect_kind({"prompt": "x", "completion": "y"}) == "sft"
    assert detect_kind({"prompt": "x", "completion": "y", "label": True}) == "binary"
    assert detect_kind({"prompt": "x", "chosen": "y", "rejected": "z"}) == "pair"
    assert detect_kind({"prompt": "x", "completions": ["a", "b"]}) == "ranking"


def _write(tmp_path, lines):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_json_names_file_and_line(tmp_path):
    path = _write(tmp_path, [json.dumps({"prompt": "a", "completion": "b"}), '{"prompt": "a", "completion": '])
    with pytest.raises(DataError) as err:
        read_records(path)
    assert err.value.line == 2 and str(path) in str(err.value) and "JSON" in str(err.value)


def test_missing_field_names_field_and_expectation(tmp_path):
    path = _write(
        tmp_path, [json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}), json.dumps({"prompt": "a", "chosen": "b"})]
    )
    with pytest.raises(DataError) as err:
        read_records(path, kind="pair")
    assert err.value.line == 2 and err.value.field == "rejected"
    assert f"{path}:2: rejected:" in str(err.value)


@pytest.mark.parametrize(
    "row, field",
    [
        ({"prompt": "a", "chosen": "", "rejected": "c"}, "chosen"),
        ({"prompt": "a", "chosen": "same", "rejected": "same"}, None),
        ({"prompt": "a", "completion": "b", "label": "maybe"}, "label"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
    ],
)
def test_semantic_errors(tmp_path, row, field):
    path = _write(tmp_path, [json.dumps(row)])
    kind = detect_kind(row) if "label" not in row else "binary"
    with pytest.raises(DataError) as err:
        read_records(path, kind=kind)
    assert err.value.line == 1
    if field is not None:
        assert err.value.field is not None and err.value.field.startswith(field)


def test_skip_mode_counts_every_bad_row(tmp_path):
    good = json.dumps({"prompt": "a", "completion": "b", "extra": 1})
    path = _write(tmp_path, [good, "not json", json.dumps({"prompt": "a"}), good, json.dumps([1, 2])])
    loaded = read_records(path, kind="sft", on_error="skip")
    assert len(loaded.records) == 2 and loaded.records[0]["extra"] == 1
    assert [e.line for e in loaded.skipped] == [2, 3, 5]


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="jsonl"):
        read_records(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "missing.jsonl")
