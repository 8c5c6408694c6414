"""Reading and writing records as JSONL, Parquet or Hugging Face ``datasets`` folders.

Every row is validated against its record type when it is read. A bad row stops the load with a
message naming the file, the line (or row), the field and what was expected, unless the caller
asked to skip bad rows; then the skipped rows are counted, kept in ``LoadedRecords.skipped`` and
reported, never silently dropped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from alignkit.data.records import RECORD_TYPES, RecordKind, detect_kind

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]


class DataError(ValueError):
    """A record that does not fit its expected shape, located precisely enough to fix by hand."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, expected: str) -> None:
        self.path, self.line, self.field, self.expected = str(path), line, field, expected
        where = f"{self.path}" + (f", line {line}" if line is not None else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{expected}")


@dataclass
class LoadedRecords:
    """The valid rows of a file, plus every row that was skipped and why."""

    records: list[dict[str, Any]]
    kind: RecordKind
    path: str
    skipped: list[DataError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """(line number, object) for each non-blank line; a bad line is yielded as a DataError, not raised."""
    with Path(path).open(encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield i, DataError(path, i, None, f"valid JSON on one line ({e.msg} at column {e.colno})")
                continue
            if not isinstance(row, dict):
                yield i, DataError(path, i, None, f"a JSON object, found {type(row).__name__}")
                continue
            yield i, row


def read_jsonl_objects(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Every JSON object of a JSONL file with its line number; the first bad line raises."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    for i, row in iter_jsonl(path):
        if isinstance(row, DataError):
            raise row
        rows.append((i, row))
    return rows


def iter_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """Yield (line number, row) pairs; JSON errors are yielded, not raised, so callers can skip them."""
    suffix = path.suffix.lower()
    if path.is_dir():
        import datasets  # ~1 s to import, and only `datasets` folders need it

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            raise DataError(path, None, None, f"a single dataset split, found splits {list(ds)}")
        for i, row in enumerate(ds, start=1):
            yield i, dict(row)
    elif suffix == ".parquet":
        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield i, row
    elif suffix in (".jsonl", ".json", ".ndjson"):
        yield from iter_jsonl(path)
    else:
        raise DataError(path, None, None, "a .jsonl, .parquet file or a `datasets` folder (save_to_disk)")


def _describe(err: ValidationError) -> tuple[str | None, str]:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or None
    msg = first["msg"].removeprefix("Value error, ")
    if loc is None and msg.startswith("'"):
        # Whole-record checks name their field first ("'chosen' is empty"); surface it as the field.
        loc = msg[1:].split("'", 1)[0] or None
    return loc, msg


def validate_row(row: dict[str, Any], kind: RecordKind, path: str | Path = "<memory>", line: int | None = None) -> None:
    """Raise :class:`DataError` if ``row`` does not fit ``kind``."""
    try:
        RECORD_TYPES[kind].model_validate(row)
    except ValidationError as e:
        loc, msg = _describe(e)
        raise DataError(path, line, loc, f"{msg} (for a {kind} record)") from None


def read_records(path: str | Path, kind: RecordKind | None = None, on_error: OnError = "raise") -> LoadedRecords:
    """Load and validate every row of ``path``.

    ``kind`` is detected from the first row's columns when not given (TRL's convention). With
    ``on_error="skip"`` bad rows are collected in ``skipped`` and their count is logged.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    records: list[dict[str, Any]] = []
    skipped: list[DataError] = []
    for line, row in iter_rows(path):
        try:
            if isinstance(row, DataError):
                raise row
            kind = kind or detect_kind(row)
            validate_row(row, kind, path, line)
        except DataError as err:
            if on_error == "raise":
                raise
            skipped.append(err)
            continue
        records.append(row)
    if skipped:
        log.warning("%s: skipped %d bad record(s); first: %s", path, len(skipped), skipped[0])
    if not records:
        raise DataError(path, None, None, f"at least one valid record (skipped {len(skipped)})")
    return LoadedRecords(records=records, kind=kind or "sft", path=str(path), skipped=skipped)


def write_records(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSONL, Parquet (by suffix) or a ``datasets`` folder (no suffix).

    JSONL is written to a temporary file and renamed, so a crash never leaves half a file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(records)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(path)
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif suffix == "":
        import datasets

        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    else:
        raise ValueError(f"{path}: cannot write '{suffix}'; use .jsonl, .parquet or a folder name")
    return path


def skip_reason(err: DataError) -> str:
    """Short bucket name for a record that failed validation (for the counts in the run report)."""
    text = err.expected
    if "identical" in text:
        return "identical"
    if "empty" in text:
        return "empty"
    return "invalid"
