"""Writing files so that no input is ever destroyed: atomic writes and the output-folder guard.

Two promises every command keeps (issue #21):

* **A file is either the old one or the whole new one.** :func:`atomic_write_text`,
  :func:`atomic_write_bytes`, :func:`atomic_open` and :func:`atomic_path` write to a temporary
  file in the same folder, flush and ``fsync`` it, then ``os.replace`` it over the target (an
  atomic rename on POSIX and Windows) and ``fsync`` the folder, so a kill or a full disk mid-write
  leaves the previous file intact and at most a stray ``.NAME.*.tmp``.
* **A run folder is new, empty, or this same run's.** :func:`guard_run_folder` compares a
  fingerprint of the run's configuration (the fields that change results, plus a digest of the
  input files) with the one saved in the folder when the run started. Another run's folder, or a
  folder of unrelated files, is refused with the differing fields named; ``--overwrite`` replaces
  it. Output paths equal to an input (``sandbox score --data X --output X``) are refused before
  anything is opened (:func:`refuse_output_inputs`).

Standard library plus pydantic only, so the CLI can call it before loading anything heavy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from alignkit.data.errors import DataError

FINGERPRINT_FILE = "alignkit_fingerprint.json"


# --------------------------------------------------------------------------- atomic writes


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows); the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path``; when the block succeeds it replaces ``path`` atomically.

    For libraries that write by file name (``torch.save``, ``pyarrow.parquet.write_table``). The
    temporary file is removed if the block raises.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """``open(path, mode)`` that writes a temporary file and renames it over ``path`` on success."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp, tmp.open(mode, encoding=None if "b" in mode else encoding) as f:
        yield f
        f.flush()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename); returns ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (temp file + fsync + rename); returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


# --------------------------------------------------------------------------- outputs vs inputs


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def refuse_output_inputs(output: str | Path, inputs: Mapping[str, str | Path | None], field: str = "output") -> None:
    """Raise :class:`DataError` if ``output`` is one of ``inputs`` (or a folder holding one).

    Called before any file is opened, so ``--data X --output X`` is an error, not an empty ``X``.
    """
    out = _resolved(output)
    for name, value in inputs.items():
        if value is None or str(value) == "":
            continue
        given = Path(value)
        if not given.exists():
            continue
        src = _resolved(given)
        if src == out or (out.exists() and given.exists() and os.path.samefile(out, given)):
            raise DataError(
                output, None, field, f"a path other than the input --{name.replace('_', '-')}", seen=f"the same path ({value})"
            )
        if out in src.parents:
            raise DataError(
                output,
                None,
                field,
                f"a folder that does not hold the input --{name.replace('_', '-')}",
                seen=f"{value} inside it",
            )


def existing_path_inputs(config: BaseModel, skip: Iterable[str] = ("output",)) -> dict[str, str]:
    """The config fields whose value names an existing file or folder (the run's inputs)."""
    skipped = set(skip)
    out: dict[str, str] = {}
    for name, value in config:
        if name in skipped or value is None or isinstance(value, bool):
            continue
        if isinstance(value, (str, Path)) and str(value) and len(str(value)) < 4096:
            try:
                if Path(value).exists():
                    out[name] = str(value)
            except OSError:
                continue
    return out


# --------------------------------------------------------------------------- run fingerprints


def _digest_path(path: Path) -> str:
    """sha256 of a file's bytes; for a folder, of its files' names and sizes (cheap for big models)."""
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(f"{p.relative_to(path)}\0{p.stat().st_size}\n".encode())
    else:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def run_fingerprint(config: BaseModel, ignore: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of ``config`` that decide a run's results (JSON values), plus digests of its input files.

    ``ignore`` names fields that do not change results (the output path, resume, progress bars,
    checkpoint cadence). Input files are digested so that the same path holding new data is a
    different run.
    """
    skipped = set(ignore)
    fields = {k: v for k, v in json.loads(config.model_dump_json()).items() if k not in skipped}
    inputs = {name: _digest_path(Path(p)) for name, p in existing_path_inputs(config, skip=skipped).items()}
    return {"config": fields, "inputs": inputs}


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What changed, real changes first (fields both runs set), then fields only one of them has."""
    changed, one_sided = [], []
    for section in ("config", "inputs"):
        a, b = saved.get(section, {}) or {}, now.get(section, {}) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                if section == "inputs":
                    changed.append(f"content of --{key.replace('_', '-')}")
                elif key in a and key in b:
                    changed.append(f"{key} ({_short(a[key])} -> {_short(b[key])})")
                else:
                    one_sided.append(f"{key} ({_short(a.get(key, '<unset>'))} -> {_short(b.get(key, '<unset>'))})")
    return changed + one_sided


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _unsafe_to_replace(folder: Path) -> str | None:
    here = Path.cwd().resolve()
    if folder == here or folder in here.parents:
        return "the current folder or one above it"
    if folder == Path.home().resolve() or folder.parent == folder:
        return "a home or root folder"
    return None


def guard_run_folder(
    output: str | Path,
    fingerprint: dict[str, Any],
    *,
    overwrite: bool = False,
    resume: bool = True,
    inputs: Mapping[str, str | Path | None] | None = None,
) -> str:
    """Make sure ``output`` may receive this run; returns ``"new"``, ``"resume"`` or ``"overwrote"``.

    * missing or empty: created, the fingerprint saved (``new``);
    * holding this same run (saved fingerprint equal): kept, the trainer resumes from its
      checkpoints (``resume``); with ``resume=False`` that would overwrite the run's own
      checkpoints, so it is refused unless ``overwrite``;
    * anything else (another run's folder, unrelated files, a file): refused naming what differs,
      unless ``overwrite``, which empties the folder first (never one holding an input, the
      current folder, or a home/root folder).
    """
    folder = Path(output)
    refuse_output_inputs(folder, inputs or {})
    if folder.exists() and not folder.is_dir():
        raise DataError(folder, None, "output", "a folder for the run", seen="an existing file")
    marker = folder / FINGERPRINT_FILE
    # A folder holding nothing but a fingerprint is a run that never got going (bad data, a crash
    # while loading): as good as empty.
    entries = sorted(p.name for p in folder.iterdir() if p.name != FINGERPRINT_FILE) if folder.is_dir() else []
    if overwrite and entries:
        why = _unsafe_to_replace(folder.resolve())
        if why is not None:
            raise DataError(folder, None, "output", "a run folder that --overwrite may empty", seen=why)
        shutil.rmtree(folder)
        folder.mkdir(parents=True)
        atomic_write_text(marker, json.dumps(fingerprint, indent=2, sort_keys=True))
        return "overwrote"
    if not entries:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, json.dumps(fingerprint, indent=2, sort_keys=True))
        return "new"
    saved: dict[str, Any] | None = None
    if marker.is_file():
        try:
            saved = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = None
    if saved is None:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise DataError(
            folder,
            None,
            "output",
            "a new or empty folder, or one this same run started (with its " + FINGERPRINT_FILE + "); "
            "pass --overwrite to replace its contents or choose another --output",
            seen=f"{len(entries)} other entr{'y' if len(entries) == 1 else 'ies'}: {shown}",
        )
    diffs = _differences(saved, fingerprint)
    if diffs:
        raise DataError(
            folder,
            None,
            "output",
            "this same run's folder (to resume it), or a new one; pass --overwrite to replace it or choose another --output",
            seen=f"a run with different settings: {'; '.join(diffs[:8])}",
        )
    if not resume:
        raise DataError(
            folder,
            None,
            "resume",
            "--resume to continue this run from its checkpoints, or --overwrite to start it over",
            seen="--no-resume with this run's files already in the folder",
        )
    return "resume"


# --------------------------------------------------------------------------- model folders


def _check_safetensors(path: Path, field: str) -> None:
    """A ``.safetensors`` file's header is whole and its tensors fit in the file (catches truncated copies)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > size - 8:
            raise DataError(
                path, None, field, "a complete .safetensors file", seen=f"a header length of {n} bytes in a file of {size} bytes"
            )
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise DataError(
                path, None, field, "a .safetensors file with a JSON header", seen=f"a corrupt header ({err})"
            ) from None
    if not isinstance(header, dict):
        raise DataError(path, None, field, "a .safetensors file with a JSON header", seen="a header that is not an object")
    ends = [v.get("data_offsets", [0, 0])[1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    need = 8 + n + max(ends, default=0)
    if need > size:
        raise DataError(path, None, field, f"a complete .safetensors file ({need} bytes)", seen=f"{size} bytes (truncated?)")


def check_model_folder(path: str | Path, field: str = "model") -> None:
    """Refuse a local model folder that cannot load, before anything is loaded, naming the bad file.

    Checks only what is cheap: a ``config.json`` (or a LoRA ``adapter_config.json``) that is a JSON
    object, and every ``.safetensors`` file whole. A path that is not a folder is left to the loader
    (it may be a hub id or ``tiny``).
    """
    folder = Path(path)
    if not folder.is_dir():
        return
    configs = [folder / name for name in ("config.json", "adapter_config.json") if (folder / name).is_file()]
    if not configs:
        names = sorted(p.name for p in folder.iterdir())
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        raise DataError(
            folder,
            None,
            field,
            "a model folder saved by save_pretrained (config.json and weights)",
            seen=f"a folder holding {shown}" if names else "an empty folder",
        )
    for config in configs:
        try:
            loaded = json.loads(config.read_bytes().decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise DataError(config, None, field, "UTF-8 JSON", seen="bytes that are not UTF-8") from None
        except json.JSONDecodeError as err:
            raise DataError(config, err.lineno, field, "valid JSON", seen=f"{err.msg} at column {err.colno}") from None
        if not isinstance(loaded, dict):
            raise DataError(config, None, field, "a JSON object", seen=type(loaded).__name__)
    for weights in sorted(folder.glob("*.safetensors")):
        _check_safetensors(weights, field)
