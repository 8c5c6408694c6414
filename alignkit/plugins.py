"""Loading code by name: the one place a ``"package.module:name"`` string becomes an object.

Plug-in points (a pipeline's ``uses: python:…``, a reward's ``python:…``, a CLI command's recipe,
the sandbox reward) name their target as text so that the library never imports what it does not
need, and so that users can plug in their own code without editing alignkit. The package
``__init__`` files use :func:`lazy_exports` for the same reason: importing one submodule (say, a
torch-free config) must not load its siblings (and torch with them).

Standard library only: every layer may import this module.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


class PluginError(ValueError):
    """A ``"package.module:name"`` target that is malformed, cannot be imported or names nothing."""


def load_object(target: str, *, what: str = "target", scheme: str = "", callable_only: bool = True) -> Any:
    """Import ``"package.module:name"`` and return ``name`` from it.

    ``what`` starts the error message (e.g. ``"reward 'python:my.mod:fn'"``), so each plug-in point
    says which of the user's settings is wrong; ``scheme`` is the prefix the user writes before the
    target (``"python:"``), repeated in the hint.
    """
    module_name, sep, attr = target.strip().rpartition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"{what}: expected {scheme}package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise PluginError(f"{what}: cannot import module '{module_name}' ({err})") from err
    obj = getattr(module, attr, None)
    if obj is None:
        raise PluginError(f"{what}: module '{module_name}' has no attribute '{attr}'")
    if callable_only and not callable(obj):
        raise PluginError(f"{what}: '{attr}' is not callable (module '{module_name}')")
    return obj


def lazy_exports(package: str, homes: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package that re-exports ``name -> submodule`` lazily (PEP 562).

    Usage in ``pkg/__init__.py``: ``__getattr__, __dir__ = lazy_exports(__name__, _HOME)``.
    """

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module '{package}' has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(homes))

    return __getattr__, __dir__
