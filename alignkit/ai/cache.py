"""An on-disk cache of model requests, so rerunning a labelling or CAI job costs nothing.

Each request is keyed by the SHA-256 of its canonical JSON (sorted keys, no whitespace), which
covers the model name, the messages and every sampling parameter including the seed. One small
JSON file per entry, written to a temporary name and renamed into place: a killed run never leaves
a half-written entry, and concurrent threads never share a file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from alignkit.data.files import atomic_write_text


def request_key(request: dict[str, Any]) -> str:
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class RequestCache:
    """``get``/``put`` JSON-able responses by request; ``hits``/``misses`` count lookups."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, request: dict[str, Any]) -> Any | None:
        path = self._path(request_key(request))
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            self.misses += 1
            return None
        self.hits += 1
        return entry["response"]

    def put(self, request: dict[str, Any], response: Any) -> None:
        path = self._path(request_key(request))
        # The request is stored too: entries stay inspectable and auditable by hand.
        atomic_write_text(path, json.dumps({"request": request, "response": response}, ensure_ascii=False))
