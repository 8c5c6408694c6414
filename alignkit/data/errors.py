"""The one error a user's bad input raises: :class:`DataError`, printed as ``FILE[:LINE]: FIELD: expected …, saw …``.

Every reader and checker in alignkit raises it for input the user can fix by hand, and the CLI
prints it as one line, ``error: data.jsonl:3: chosen: expected a string, saw a number (12345)``, with exit
code 2 (see :mod:`alignkit.cli.common`). Its own module so that the writers (:mod:`alignkit.data.files`)
and the readers (:mod:`alignkit.data.io`, which re-exports it) share it without importing each other.
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """An input that does not fit its expected shape, located precisely enough to fix by hand.

    ``path`` (and ``line``, 1-based, for line-oriented files) say where, ``field`` which field or
    setting, ``expected`` what would have been right and ``seen`` (optional) what was there.
    """

    def __init__(self, path: str | Path, line: int | None, field: str | None, expected: str, seen: str | None = None) -> None:
        self.path, self.line, self.field, self.expected, self.seen = str(path), line, field, expected, seen
        where = self.path + (f":{line}" if line is not None else "")
        what = f"{field}: " if field else ""
        # With a ``seen``, ``expected`` is a noun phrase: "expected a string, saw a number (12345)".
        body = f"expected {expected}, saw {seen}" if seen else expected
        super().__init__(f"{where}: {what}{body}")


def describe_value(value: object, limit: int = 40) -> str:
    """A short description of a wrong value for ``seen``: its JSON type and a clipped rendering."""
    kind = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return kind if value is None else f"{kind} ({text})"
