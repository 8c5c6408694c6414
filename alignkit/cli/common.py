"""Turn a pydantic config class into a typer command.

Every CLI flag maps to exactly one config field, so the flags are *generated* from the config
instead of being written twice: field ``max_steps`` becomes ``--max-steps``, a ``bool`` field
becomes ``--x/--no-x``, a ``Literal`` becomes a choice. ``--config run.yaml`` loads the same fields
from YAML; flags given on the command line override the file. Validation errors are pydantic's,
printed as one line per bad field.

Printing ``--help`` must not import torch (contract: ``alignkit --help`` under a second), so a
command names its recipe as a ``"package.module:function"`` string that :func:`load` imports only
when the command runs; config classes live in torch-free modules and are imported at module top.
This is the one place the CLI defers an import.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import typer
import yaml
from pydantic import BaseModel, ValidationError

from alignkit.data.io import DataError
from alignkit.plugins import PluginError, load_object


def _option_type(annotation: Any) -> tuple[Any, dict[str, Any]]:
    """Map a field annotation to a type typer understands (plus extra ``typer.Option`` kwargs)."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return _option_type(args[0])
    if origin is Literal:
        return annotation, {}  # typer renders a Literal as a choice
    if annotation in (int, float, bool, str, Path):
        return annotation, {}
    return str, {}  # lists, dicts, unions: passed as text and parsed by pydantic


def load_config(config_cls: type[BaseModel], config_file: Path | None, overrides: dict[str, Any]) -> BaseModel:
    """Merge YAML (if any) with CLI overrides and validate; exit with a readable message on error."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise typer.BadParameter(f"cannot read {config_file}: {err}", param_hint="--config") from err
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{config_file}: expected a mapping of field: value", param_hint="--config")
        values.update({k.replace("-", "_"): v for k, v in loaded.items()})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return config_cls(**values)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            field = ".".join(str(p) for p in e["loc"]) or "(config)"
            lines.append(f"  --{field.replace('_', '-')}: {e['msg']}")
        source = f" (from {config_file} and the command line)" if config_file else ""
        typer.echo(f"Invalid configuration{source}:\n" + "\n".join(lines), err=True)
        raise typer.Exit(2) from err


def load(target: str) -> Any:
    """The object named by ``"package.module:name"`` (or the module ``"package.module"``), imported now.

    Command bodies call this when they run, so registering a command never imports its recipe.
    """
    if ":" not in target:
        return importlib.import_module(target)
    return load_object(target, what=f"command recipe '{target}'", callable_only=False)


Done = Callable[[Any, Any], str]


def config_command(
    app: typer.Typer,
    name: str,
    config_cls: type[BaseModel],
    run: Callable[[Any], Any] | str,
    help: str | None = None,
    done: str | Done | None = None,
    argument: str | None = None,
) -> None:
    """Register ``run(config)`` as ``alignkit <name>`` with one flag per field of ``config_cls``.

    ``argument`` names one field that may also be given positionally (``alignkit run my.yaml`` is
    ``alignkit run --pipeline my.yaml``); it is still that field, so YAML and the flag set it too.

    ``run`` is a function, or a ``"package.module:function"`` string loaded when the command runs
    (so registering the command imports nothing heavy). ``done`` is printed afterwards: a format
    string with ``{result}`` and ``{config}``, or a function ``(config, result) -> str``.
    """
    params = [
        inspect.Parameter(
            "config_file",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, "--config", help="YAML file with these fields; flags override it."),
            annotation=Path | None,
        )
    ]
    if argument is not None:
        if argument not in config_cls.model_fields:
            raise ValueError(f"{config_cls.__name__} has no field '{argument}' to take as an argument")
        params.append(
            inspect.Parameter(
                "positional",
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Argument(None, metavar=argument.upper(), help=f"Same as --{argument.replace('_', '-')}."),
                annotation=str | None,
            )
        )
    for field_name, field in config_cls.model_fields.items():
        opt_type, extra = _option_type(field.annotation)
        flag = "--" + field_name.replace("_", "-")
        decls = [f"{flag}/--no-{field_name.replace('_', '-')}"] if opt_type is bool else [flag]
        params.append(
            inspect.Parameter(
                field_name,
                inspect.Parameter.KEYWORD_ONLY,
                # Default None: "not given", so YAML values and the config's own defaults apply.
                default=typer.Option(None, *decls, help=field.description or "", show_default=False, **extra),
                annotation=opt_type | None,
            )
        )

    def command(config_file: Path | None = None, positional: str | None = None, **kwargs: Any) -> None:
        if argument is not None and positional is not None:
            if kwargs.get(argument) is not None:
                raise typer.BadParameter(f"given twice: as an argument and as --{argument.replace('_', '-')}")
            kwargs[argument] = positional
        config = load_config(config_cls, config_file, kwargs)
        try:
            fn = load(run) if isinstance(run, str) else run
            result = fn(config)
        except (DataError, FileNotFoundError, PluginError) as err:
            # Input problems are the user's to fix: one clear line, no traceback.
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from err
        if done is not None:
            typer.echo(done(config, result) if callable(done) else done.format(result=result, config=config))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = help or ("" if isinstance(run, str) else (run.__doc__ or "").strip().split("\n\n")[0])
    app.command(name)(command)
