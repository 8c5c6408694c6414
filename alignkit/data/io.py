"""Reading and writing records as JSONL, Parquet or Hugging Face ``datasets`` folders.

Every row is validated against its record type when it is read, strictly: a number where text
belongs, or ``"yes"`` where a boolean belongs, is an error, never silently converted. A bad row
stops the load with a :class:`DataError` naming the file, the line (or row), the field, what was
expected and what was seen, unless the caller asked to skip bad rows; then the skipped rows are
counted, kept in ``LoadedRecords.skipped`` and reported, never silently dropped.

JSONL is read as bytes, line by line, so that a UTF-8 byte-order mark and Windows line ends are
accepted, invalid UTF-8 is reported with its line and column, and one huge line (over
``max_record_bytes``, default :data:`MAX_RECORD_BYTES`, settable with the environment variable
``ALIGNKIT_MAX_RECORD_BYTES``) is refused before it is parsed. A file that is not Parquet, a
folder that is not a ``datasets`` folder and an empty file are errors with the path named.
Writes are atomic (:mod:`alignkit.data.files`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from alignkit.data.errors import DataError, describe_value
from alignkit.data.files import atomic_open, atomic_path
from alignkit.data.formats import ShapeError, normalize_row, train_split
from alignkit.data.records import RECORD_TYPES, RecordKind, detect_kind

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]

__all__ = [
    "MAX_RECORD_BYTES",
    "DataError",
    "LoadedRecords",
    "iter_jsonl",
    "iter_rows",
    "read_jsonl_objects",
    "read_records",
    "skip_reason",
    "validate_row",
    "write_records",
]


def _max_record_bytes_from_env() -> int:
    raw = os.environ.get("ALIGNKIT_MAX_RECORD_BYTES", "")
    try:
        return int(raw) if raw.strip() else 16 * 1024 * 1024
    except ValueError:
        raise DataError("ALIGNKIT_MAX_RECORD_BYTES", None, None, "a whole number of bytes", seen=repr(raw)) from None


MAX_RECORD_BYTES = _max_record_bytes_from_env()
"""Longest JSONL line (one record) read by default: 16 MiB, or ``ALIGNKIT_MAX_RECORD_BYTES``."""

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
BOM = b"\xef\xbb\xbf"


@dataclass
class LoadedRecords:
    """The valid rows of a file, plus every row that was skipped and why."""

    records: list[dict[str, Any]]
    kind: RecordKind
    path: str
    skipped: list[DataError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


def _clip(text: str, limit: int = 60) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def iter_jsonl(path: Path, max_record_bytes: int | None = None) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """(line number, object) for each non-blank line; a bad line is yielded as a DataError, not raised.

    A leading UTF-8 BOM and ``\\r\\n`` line ends are accepted; invalid UTF-8, a line longer than
    ``max_record_bytes`` and anything but one JSON object per line are bad lines.
    """
    path = Path(path)
    limit = MAX_RECORD_BYTES if max_record_bytes is None else max_record_bytes
    with path.open("rb") as f:
        for i, raw in enumerate(f, start=1):
            if i == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            if len(raw) > limit:
                yield (
                    i,
                    DataError(
                        path,
                        i,
                        None,
                        f"a record of at most {limit} bytes (raise ALIGNKIT_MAX_RECORD_BYTES to allow longer ones)",
                        seen=f"a line of {len(raw)} bytes",
                    ),
                )
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield i, DataError(path, i, None, "UTF-8 text", seen=f"byte 0x{raw[e.start]:02x} at column {e.start + 1}")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                hint = " (a JSON array or pretty-printed JSON is not JSON Lines: one object per line)" if i == 1 else ""
                yield (
                    i,
                    DataError(
                        path, i, None, f"one JSON object per line{hint}", seen=f"{e.msg} at column {e.colno} in {_clip(line)}"
                    ),
                )
                continue
            if not isinstance(row, dict):
                yield i, DataError(path, i, None, "a JSON object", seen=describe_value(row))
                continue
            yield i, row


def _must_exist(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")


def read_jsonl_objects(path: str | Path, allow_empty: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """Every JSON object of a JSONL file with its line number; the first bad line raises, as does an empty file."""
    path = Path(path)
    _must_exist(path)
    if path.is_dir():
        raise DataError(path, None, None, "a JSONL file", seen="a folder")
    rows = []
    for i, row in iter_jsonl(path):
        if isinstance(row, DataError):
            raise row
        rows.append((i, row))
    if not rows and not allow_empty:
        raise DataError(path, None, None, "at least one JSON object", seen="an empty file")
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    # pyarrow (and the numpy it loads) costs ~0.4 s of import; this module is imported by every
    # CLI command's --help, which reads no Parquet, so it is imported here, like `datasets` below.
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise DataError(path, None, None, "a Parquet file", seen=f"unreadable bytes ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _load_dataset_folder(path: Path) -> Any:
    import datasets  # ~1 s to import, and only `datasets` folders need it

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError, KeyError) as err:
        names = sorted(p.name for p in path.iterdir())
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "") if names else "nothing"
        raise DataError(
            path,
            None,
            None,
            "a file (.jsonl, .parquet) or a `datasets` folder written by save_to_disk",
            seen=f"a folder holding {shown} ({_first_line(err)})",
        ) from None
    try:
        return train_split(ds, path)  # a DatasetDict trains on `train` (formats.py)
    except ShapeError as err:
        raise DataError(path, None, err.field, err.expected, seen=err.seen) from None


def iter_rows(path: Path, max_record_bytes: int | None = None) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """Yield (line number, row) pairs; per-row errors are yielded, not raised, so callers can skip them."""
    path = Path(path)
    _must_exist(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        for i, row in enumerate(_load_dataset_folder(path), start=1):
            yield i, dict(row)
    elif suffix == ".parquet":
        yield from enumerate(_read_parquet(path), start=1)
    elif suffix in JSONL_SUFFIXES:
        yield from iter_jsonl(path, max_record_bytes)
    else:
        raise DataError(
            path, None, None, "a .jsonl, .parquet file or a `datasets` folder (save_to_disk)", seen=f"'{suffix or 'no suffix'}'"
        )


def _describe(err: ValidationError) -> tuple[str | None, str, str | None]:
    """(field, expected, seen) for the first problem pydantic found."""
    errors = err.errors()
    first = errors[0]
    loc_parts = [str(p) for p in first["loc"]]
    msg = first["msg"].removeprefix("Value error, ")
    # A union (text or messages) fails once per member; report the field once, naming both shapes.
    union = [e for e in errors if e["loc"][:1] == first["loc"][:1] and len(e["loc"]) == 2 and e["type"].endswith("_type")]
    if len(union) > 1 and len(first["loc"]) == 2:
        loc_parts = loc_parts[:1]
        msg = "a string or a list of {role, content} messages"
    elif first["type"].endswith("_type") or first["type"] in ("missing", "literal_error", "too_short"):
        msg = msg.removeprefix("Input should be ").removeprefix("Field ")
    loc = ".".join(loc_parts) or None
    seen = None
    if first["type"] == "missing":
        msg, seen = "a value", "no such field"
    elif first["type"] != "value_error" and "input" in first:
        seen = describe_value(first["input"])
    if loc is None and msg.startswith("'"):
        # Whole-record checks name their field first ("'chosen' is empty"); surface it as the field.
        loc = msg[1:].split("'", 1)[0] or None
    return loc, msg, seen


def validate_row(row: dict[str, Any], kind: RecordKind, path: str | Path = "<memory>", line: int | None = None) -> None:
    """Raise :class:`DataError` if ``row`` does not fit ``kind`` (strictly: no type coercion)."""
    try:
        RECORD_TYPES[kind].model_validate(row, strict=True)
    except ValidationError as e:
        loc, msg, seen = _describe(e)
        expected = f"{msg} for a {kind} record" if seen else f"{msg} (in a {kind} record)"
        raise DataError(path, line, loc, expected, seen=seen) from None


def read_records(
    path: str | Path, kind: RecordKind | None = None, on_error: OnError = "raise", max_record_bytes: int | None = None
) -> LoadedRecords:
    """Load and validate every row of ``path``.

    ``kind`` is detected from the first row's columns when not given (TRL's convention). With
    ``on_error="skip"`` bad rows are collected in ``skipped`` and their count is logged. An empty
    file, or one where no row is valid, is an error either way.
    """
    path = Path(path)
    _must_exist(path)
    records: list[dict[str, Any]] = []
    skipped: list[DataError] = []
    for line, row in iter_rows(path, max_record_bytes):
        try:
            if isinstance(row, DataError):
                raise row
            try:
                row = normalize_row(row)  # TRL / HH-RLHF / UltraFeedback shapes to our columns (formats.py)
            except ShapeError as err:
                raise DataError(path, line, err.field, err.expected, seen=err.seen) from None
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
        if skipped:
            raise DataError(path, None, None, "at least one valid record", seen=f"{len(skipped)} bad ones; first: {skipped[0]}")
        raise DataError(path, None, None, "at least one record", seen="an empty file" if path.is_file() else "no rows")
    return LoadedRecords(records=records, kind=kind or "sft", path=str(path), skipped=skipped)


def write_records(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSONL, Parquet (by suffix) or a ``datasets`` folder (no suffix).

    Every format is written under a temporary name and renamed into place, so a crash never
    leaves half a file behind and an existing file is replaced only by a complete one. A folder
    where a file should go (or a file where a ``datasets`` folder should go) is refused.
    """
    path = Path(path)
    rows = list(records)
    suffix = path.suffix.lower()
    if suffix in (*JSONL_SUFFIXES, ".parquet") and path.is_dir():
        raise DataError(path, None, "output", f"a {suffix} file to write", seen="an existing folder")
    if suffix in JSONL_SUFFIXES:
        with atomic_open(path, "w") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif suffix == ".parquet":
        import pyarrow as pa  # deferred: see _read_parquet
        import pyarrow.parquet as pq

        with atomic_path(path) as tmp:
            pq.write_table(pa.Table.from_pylist(rows), tmp)
    elif suffix == "":
        import datasets

        if path.exists() and not (path.is_dir() and (path / "dataset_info.json").exists()):
            raise DataError(
                path, None, "output", "a new folder (or an earlier `datasets` folder) to save into", seen="other files there"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            datasets.Dataset.from_list(rows).save_to_disk(str(tmp_dir / "ds"))
            if path.exists():
                shutil.rmtree(path)
            (tmp_dir / "ds").rename(path)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    else:
        raise DataError(path, None, "output", "a .jsonl, .parquet path or a folder name", seen=f"'{suffix}'")
    return path


def skip_reason(err: DataError) -> str:
    """Short bucket name for a record that failed validation (for the counts in the run report)."""
    text = err.expected
    if "identical" in text:
        return "identical"
    if "empty" in text:
        return "empty"
    return "invalid"
