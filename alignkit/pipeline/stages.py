"""Stage functions a pipeline can ``use``: each takes (params, folder) and returns its outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STAGES: dict[str, Any] = {}
