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

Errors (issue #21): every command reports failure the same way, one line per problem,
``error: FILE[:LINE]: FIELD: expected …, saw …``, exit code 2 when the input or configuration is
bad (the user can fix it) and 1 when a good input failed to run; no traceback unless ``--debug``
(or ``ALIGNKIT_DEBUG=1``). :func:`describe_error` is the one table that maps exceptions to those
codes. Before a recipe runs, a config with an ``output`` is checked against its inputs (never the
same path), and one with an ``overwrite`` field (every trainer) gets the output-folder guard of
:mod:`alignkit.data.files`: the folder must be new, empty, or this same run's.
"""

from __future__ import annotations

import difflib
import errno
import importlib
import inspect
import json
import os
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import typer
import yaml
from pydantic import BaseModel, ValidationError
from typer.core import TyperGroup

from alignkit.data.errors import DataError, describe_value
from alignkit.data.files import check_model_folder, existing_path_inputs, guard_run_folder, refuse_output_inputs, run_fingerprint
from alignkit.plugins import PluginError, load_object

BAD_INPUT = 2  # the user can fix it: data, configuration, paths
RUN_FAILED = 1  # good input, the run itself failed (diverged, out of memory, a bug)
DEBUG_ENV = "ALIGNKIT_DEBUG"
_debug = False

# Config fields that name a model folder: checked (config.json, whole .safetensors) before anything loads.
MODEL_FIELDS = frozenset({"model", "value_model", "reward_model", "ref_model", "judge_model"})

# Fields of a run's config that do not change its results: left out of the output folder's fingerprint.
RESULT_NEUTRAL_FIELDS = frozenset(
    {"output", "resume", "overwrite", "progress", "report_to", "log_every", "save_every", "keep_checkpoints", "allow_download"}
)


def set_debug(enabled: bool) -> None:
    """``alignkit --debug``: let exceptions propagate with their traceback."""
    global _debug
    _debug = enabled


def debug_enabled() -> bool:
    return _debug or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _pydantic_lines(err: ValidationError, where: Callable[[str], str] | None = None) -> list[str]:
    """One ``WHERE: FIELD: expected …, saw …`` line per problem pydantic found.

    ``where(field)`` gives the line's start (``run.yaml:3: lr`` or ``--lr``); default: the model's name and the field.
    """
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(config)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            text = "expected a value (required), saw none"
        elif e["type"] == "extra_forbidden":
            text = "expected a known field, saw an unknown one (misspelt?)"
        elif e["type"] != "value_error" and "input" in e:
            text = f"expected {msg.removeprefix('Input should be ')}, saw {describe_value(e['input'])}"
        else:
            text = msg
        prefix = where(field) if where is not None else f"{err.title}: {field}"
        lines.append(f"{prefix}: {text}")
    return lines


def _yaml_lines(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is not None:
        return f"{mark.name}:{mark.line + 1}: not valid YAML: {problem} (column {mark.column + 1})"
    return f"not valid YAML: {problem}"


def _qualified(err: BaseException) -> str:
    return f"{type(err).__module__}.{type(err).__name__}"


def describe_error(err: BaseException) -> tuple[int, str]:
    """``(exit code, message)`` for an exception that reached the CLI: 2 for bad input, 1 for a failed run."""
    name = _qualified(err)
    text = str(err).strip() or type(err).__name__
    if isinstance(err, (DataError, PluginError)):
        return BAD_INPUT, text
    if isinstance(err, ValidationError):
        return BAD_INPUT, "\n".join(_pydantic_lines(err))
    if isinstance(err, yaml.YAMLError):
        return BAD_INPUT, _yaml_lines(err)
    if isinstance(err, UnicodeDecodeError):
        return BAD_INPUT, f"expected UTF-8 text, saw byte 0x{err.object[err.start]:02x} at offset {err.start}"
    if isinstance(err, json.JSONDecodeError):
        return BAD_INPUT, f"line {err.lineno}: expected valid JSON, saw {err.msg} at column {err.colno}"
    if "safetensor" in name.lower() or "HeaderTooLarge" in text or "deserializing header" in text:
        return BAD_INPUT, f"expected a readable model weights file, saw a corrupt or truncated one ({text.splitlines()[0]})"
    if name.startswith("pyarrow."):
        return BAD_INPUT, f"expected a readable Parquet/Arrow file, saw: {text.splitlines()[0]}"
    if "file is not a database" in text or "unable to open database file" in text:
        return BAD_INPUT, f"expected an SQLite database (or a database URL), saw: {text.splitlines()[0]}"
    if name.startswith("sqlalchemy.exc.ArgumentError"):
        return BAD_INPUT, f"expected a database URL or an SQLite file path, saw: {text.splitlines()[0]}"
    if isinstance(err, OSError):
        if err.errno in (errno.ENOSPC, errno.EIO, errno.ENOMEM):
            return RUN_FAILED, text
        if err.filename is not None and err.strerror:
            return BAD_INPUT, f"{err.filename}: {err.strerror.lower()}"
        return BAD_INPUT, text
    if isinstance(err, typer.TyperException) and hasattr(err, "format_message"):  # typer.BadParameter and friends
        return BAD_INPUT, err.format_message()
    if isinstance(err, ValueError):  # the library raises ValueError for arguments it cannot use
        return BAD_INPUT, text
    if type(err).__name__ == "TrainingDiverged":
        return RUN_FAILED, text
    return RUN_FAILED, f"run failed: {type(err).__name__}: {text}"


@contextmanager
def report_errors() -> Iterator[None]:
    """Turn exceptions into ``error: …`` lines and the exit codes of :func:`describe_error`.

    With ``--debug`` (or ``ALIGNKIT_DEBUG=1``) exceptions propagate with their traceback instead.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as err:
        if debug_enabled():
            raise
        code, message = describe_error(err)
        for line in message.splitlines() or [type(err).__name__]:
            typer.echo(f"error: {line}", err=True)
        if code == RUN_FAILED:
            typer.echo("(rerun with --debug for the traceback)", err=True)
        raise typer.Exit(code) from None


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


class AlignkitGroup(TyperGroup):
    """The root command group: usage errors (an unknown flag, ``--lr fast``) in the same one-line style, exit 2."""

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(RUN_FAILED)
        except typer.TyperException as err:
            code = int(getattr(err, "exit_code", BAD_INPUT))
            if type(err).__name__ == "NoArgsIsHelpError" or not hasattr(err, "format_message"):
                err.show()  # type: ignore[attr-defined]
                sys.exit(code)
            typer.echo(f"error: {err.format_message()}", err=True)
            ctx = getattr(err, "ctx", None)
            if ctx is not None:
                typer.echo(f"(see '{ctx.command_path} --help')", err=True)
            sys.exit(BAD_INPUT)
        sys.exit(rv if isinstance(rv, int) else 0)


def _yaml_key_lines(text: str) -> dict[str, int]:
    """Line (1-based) of each top-level key of a YAML mapping, for error messages."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value).replace("-", "_"): k.start_mark.line + 1 for k, _ in node.value}


def _field_names(config_cls: type[BaseModel]) -> set[str]:
    names = set(config_cls.model_fields)
    names |= {f.alias for f in config_cls.model_fields.values() if f.alias}
    return names


def load_config(config_cls: type[BaseModel], config_file: Path | None, overrides: dict[str, Any]) -> BaseModel:
    """Merge YAML (if any) with CLI overrides and validate; exit 2 with one line per bad field on error.

    Keys of the YAML file that are not fields of the config are errors (a misspelt key would
    otherwise be silently ignored), named with their line.
    """
    values: dict[str, Any] = {}
    key_lines: dict[str, int] = {}
    from_file: set[str] = set()
    if config_file is not None:
        if not config_file.is_file():
            raise DataError(
                config_file,
                None,
                "--config",
                "an existing YAML file",
                seen="nothing there" if not config_file.exists() else "a folder",
            )
        try:
            text = config_file.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise DataError(
                config_file, None, "--config", "UTF-8 text", seen=f"byte 0x{err.object[err.start]:02x} at offset {err.start}"
            ) from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            raise DataError(config_file, line, None, f"valid YAML ({getattr(err, 'problem', None) or err})") from None
        loaded = {} if loaded is None else loaded
        if not isinstance(loaded, dict):
            raise DataError(config_file, None, "--config", "a mapping of field: value", seen=describe_value(loaded))
        key_lines = _yaml_key_lines(text)
        loaded = {str(k).replace("-", "_"): v for k, v in loaded.items()}
        unknown = sorted(set(loaded) - _field_names(config_cls), key=lambda k: key_lines.get(k, 0))
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(config_cls.model_fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else " (see --help for this command's fields)"
            raise DataError(
                config_file,
                key_lines.get(unknown[0]),
                unknown[0],
                "a field of this command" + hint,
                seen=f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}",
            )
        values.update(loaded)
        from_file = set(loaded)
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    try:
        return config_cls(**values)
    except ValidationError as err:

        def where(field: str) -> str:
            top = field.split(".")[0]
            if top in from_file and top not in given and config_file is not None:
                line = key_lines.get(top)
                return f"{config_file}" + (f":{line}" if line else "") + f": {field}"
            flag = "--" + top.replace("_", "-")
            return flag + field[len(top) :] if top in given or top in config_cls.model_fields else field

        lines = _pydantic_lines(err, where)
        for line in lines:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(BAD_INPUT) from err


def guard_outputs(config: BaseModel) -> None:
    """Before a command opens anything: model folders it names are loadable, its output is not one of its
    inputs, and a run's folder is new, empty or its own."""
    fields = type(config).model_fields
    for name in MODEL_FIELDS & set(fields):
        value = getattr(config, name, None)
        if isinstance(value, (str, Path)) and str(value):
            check_model_folder(value, field=name)
    models = getattr(config, "models", None)
    if isinstance(models, dict):
        for label, value in models.items():
            if isinstance(value, (str, Path)):
                check_model_folder(value, field=f"models.{label}")
    output = getattr(config, "output", None)
    if "output" not in fields or output is None or str(output) == "":
        return
    inputs = existing_path_inputs(config)
    refuse_output_inputs(output, inputs)
    # Under `accelerate launch` every process runs the command: only the main one judges (and may empty) the folder.
    if "overwrite" in fields and os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0":
        guard_run_folder(
            output,
            run_fingerprint(config, ignore=RESULT_NEUTRAL_FIELDS),
            overwrite=bool(getattr(config, "overwrite", False)),
            resume=bool(getattr(config, "resume", True)),
            inputs=inputs,
        )


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
                typer.echo(
                    f"error: --{argument.replace('_', '-')}: expected it once, saw it given twice (as an argument and as a flag)",
                    err=True,
                )
                raise typer.Exit(BAD_INPUT)
            kwargs[argument] = positional
        with report_errors():
            config = load_config(config_cls, config_file, kwargs)
            guard_outputs(config)
            fn = load(run) if isinstance(run, str) else run
            result = fn(config)
        if done is not None:
            typer.echo(done(config, result) if callable(done) else done.format(result=result, config=config))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = help or ("" if isinstance(run, str) else (run.__doc__ or "").strip().split("\n\n")[0])
    app.command(name)(command)
