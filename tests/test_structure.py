"""Dependencies point one way (issue 14): checked by reading every import under alignkit/ with ast.

The package graph is layered::

    data -> models -> {train, feedback, ai, evaluate, safety, rag} -> {pipeline, web, monitor} -> cli
                                  sandbox: a client of all of these (only cli imports it)

and the library reaches the sandbox only through plug-in points that name it by string
(``sandbox[:FOLDER]`` rewards, pipeline stages), loaded with importlib. The tests fail on

(a) an import of ``alignkit.sandbox`` from a library package (at module level or in a function);
(b) an import that points up the layers, or a cycle between packages;
(c) a cycle between files (module-level imports; ``if TYPE_CHECKING:`` imports never run).

Each failure lists the offending edges or cycles with file:line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "alignkit"

# Lower rank = closer to the bottom; an import may point to the same or a lower rank only.
RANK = {
    "data": 0,
    "models": 1,
    "train": 2,
    "feedback": 2,
    "ai": 2,
    "evaluate": 2,
    "safety": 2,
    "rag": 2,
    "monitor": 3,
    "pipeline": 3,
    "web": 3,
    "sandbox": 4,
    "cli": 5,
}
LIBRARY = ["data", "models", "train", "feedback", "ai", "evaluate", "pipeline", "web", "safety", "rag", "monitor"]


@dataclass(frozen=True)
class Import:
    source: str  # importing module, e.g. alignkit.train.dpo
    target: str  # imported alignkit module, e.g. alignkit.data.pairs
    where: str  # file:line
    module_level: bool  # runs when the file is imported (not inside a function)
    type_checking: bool  # inside ``if TYPE_CHECKING:``


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str, root: Path = ROOT) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, root: Path = ROOT) -> list[Import]:
    module = _module_name(path, root)
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    where = f"{path.relative_to(root)}"

    def add(target: str, node: ast.stmt, module_level: bool, type_checking: bool) -> None:
        if target == "alignkit" or target.startswith("alignkit."):
            found.append(Import(module, target, f"{where}:{node.lineno}", module_level, type_checking))

    def visit(nodes: list[ast.stmt], module_level: bool, type_checking: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, node, module_level, type_checking)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    sub = f"{origin}.{alias.name}"
                    add(sub if _is_module(sub, root) else origin, node, module_level, type_checking)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(node.body, False, type_checking)
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.body, module_level, True)
                visit(node.orelse, module_level, type_checking)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        visit(
                            [c for c in children if isinstance(c, ast.stmt)]
                            + [s for h in children if isinstance(h, ast.ExceptHandler) for s in h.body],
                            module_level,
                            type_checking,
                        )
                if isinstance(node, ast.Match):
                    for case in node.cases:
                        visit(case.body, module_level, type_checking)

    visit(ast.parse(path.read_text(), str(path)).body, True, False)
    return found


def all_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in _imports(path)]


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return [_closed_path(c, edges) for c in components]


def _closed_path(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One cycle through the component's first node (breadth-first), e.g. [a, b, a]."""
    members, start = set(component), component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, ())):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w in members and w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return component


def _edge_lines(imports: list[Import], pairs: set[tuple[str, str]], key) -> list[str]:
    return sorted(f"  {key(i)[0]} -> {key(i)[1]}  ({i.source} imports {i.target}, {i.where})" for i in imports if key(i) in pairs)


def test_library_never_imports_the_sandbox() -> None:
    bad = [i for i in all_imports() if _package(i.source) in LIBRARY and _package(i.target) == "sandbox"]
    assert not bad, "the library imports alignkit.sandbox (name it by string and load it with importlib):\n" + "\n".join(
        f"  {i.source} -> {i.target}  ({i.where}{'' if i.module_level else ', inside a function'})" for i in bad
    )


def test_packages_point_one_way() -> None:
    imports = [i for i in all_imports() if not i.type_checking]
    pkg = lambda i: (_package(i.source), _package(i.target))  # noqa: E731
    graph: dict[str, set[str]] = defaultdict(set)
    upward: set[tuple[str, str]] = set()
    for i in imports:
        a, b = pkg(i)
        if a is None or b is None or a == b:
            continue
        graph[a].add(b)
        if RANK.get(b, -1) > RANK.get(a, 99):
            upward.add((a, b))
    cycles = _cycles(graph)
    lines = []
    if upward:
        lines.append("imports pointing up the layers (data -> models -> train/feedback/ai/evaluate -> pipeline -> cli):")
        lines += _edge_lines(imports, upward, pkg)
    for cycle in cycles:
        lines.append("package cycle: " + " -> ".join(cycle))
        lines += _edge_lines(imports, set(zip(cycle, cycle[1:])), pkg)
    assert not lines, "\n".join(lines)


def test_no_cycles_between_files() -> None:
    imports = [i for i in all_imports() if i.module_level and not i.type_checking]
    graph: dict[str, set[str]] = defaultdict(set)
    for i in imports:
        if i.source != i.target:
            graph[i.source].add(i.target)
    cycles = _cycles(graph)
    lines = []
    for cycle in cycles:
        lines.append("file cycle: " + " -> ".join(cycle))
        lines += _edge_lines(imports, set(zip(cycle, cycle[1:])), lambda i: (i.source, i.target))
    assert not cycles, "\n".join(lines)


def test_the_checker_sees_function_level_type_checking_and_relative_imports(tmp_path: Path) -> None:
    # The walker must not miss an import hidden in a function (the pattern issue 14 removed).
    pkg = tmp_path / "alignkit" / "train"
    (tmp_path / "alignkit" / "sandbox").mkdir(parents=True)
    pkg.mkdir()
    for init in (tmp_path / "alignkit" / "__init__.py", pkg / "__init__.py", tmp_path / "alignkit" / "sandbox" / "__init__.py"):
        init.write_text("")
    (tmp_path / "alignkit" / "sandbox" / "world.py").write_text("")
    (pkg / "loop.py").write_text("")
    (pkg / "rewards.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import loop\n"
        "if TYPE_CHECKING:\n    from alignkit.sandbox.world import World\n"
        "try:\n    import alignkit.data\nexcept ImportError:\n    pass\n"
        "def f():\n    from alignkit.sandbox import world\n    return world\n"
    )
    found = {(i.target, i.module_level, i.type_checking) for i in _imports(pkg / "rewards.py", tmp_path)}
    assert found == {
        ("alignkit.train.loop", True, False),
        ("alignkit.sandbox.world", True, True),
        ("alignkit.data", True, False),
        ("alignkit.sandbox.world", False, False),
    }
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


HELP_RUNNER = """
import sys
from typer.testing import CliRunner
from alignkit.cli import app
runner = CliRunner()
for args in (["--help"], ["dpo", "--help"], ["ppo", "--help"], ["feedback", "simulate", "--help"], ["evaluate", "--help"],
             ["demo", "--help"], ["sandbox", "pretrain", "--help"], ["serve", "--help"]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
heavy = ("torch", "transformers", "accelerate", "datasets", "sqlalchemy", "alembic", "pyarrow")
heavy = sorted(m for m in heavy if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


def test_help_imports_no_torch() -> None:
    out = subprocess.run([sys.executable, "-c", HELP_RUNNER], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY=\n" in out.stdout, f"printing --help imported {out.stdout.split('HEAVY=')[-1].strip()}"


EAGER_VS_LAZY = """
import importlib, sys
import typer
from typer.testing import CliRunner
from alignkit.cli import COMMAND_MODULES, app
from alignkit.cli.common import AlignkitGroup
lazy = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"}).output
print("LOADED=" + ",".join(sorted(m for m in sys.modules if m.startswith("alignkit.cli.") and m != "alignkit.cli.common")))
eager = typer.Typer(cls=AlignkitGroup, help=app.info.help, no_args_is_help=True)
eager.callback()(app.registered_callback.callback)
for name in COMMAND_MODULES:
    importlib.import_module("alignkit.cli." + name).register(eager)
same = CliRunner().invoke(eager, ["--help"], env={"COLUMNS": "100"}).output == lazy
print("SAME=" + str(same))
"""


def test_help_listing_is_what_the_modules_register_without_importing_them() -> None:
    # `alignkit --help` lists commands from the table in alignkit/cli/__init__.py; it must print
    # exactly what registering every module prints, and import none of them (issue #18: --help < 1 s).
    out = subprocess.run([sys.executable, "-c", EAGER_VS_LAZY], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LOADED=\n" in out.stdout, out.stdout
    assert "SAME=True" in out.stdout, "the COMMANDS table differs from the commands the modules register"


def test_command_table_matches_each_module() -> None:
    import importlib

    import typer
    import typer.main

    from alignkit.cli import COMMAND_MODULES, COMMANDS

    for module_name in COMMAND_MODULES:
        area = typer.Typer()
        importlib.import_module(f"alignkit.cli.{module_name}").register(area)
        registered = {name: cmd.help for name, cmd in typer.main.get_group(area).commands.items()}
        listed = {name: text for name, (module, text) in COMMANDS.items() if module == module_name}
        assert registered == listed, module_name


def test_running_one_command_loads_only_its_area() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom alignkit.cli import app\n"
        "r = CliRunner().invoke(app, ['dpo', '--help'])\nassert r.exit_code == 0, r.output\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('alignkit.cli.') and m != 'alignkit.cli.common')\n"
        "print('LOADED=' + ','.join(loaded))\n"
        "r = CliRunner().invoke(app, ['dpx'])\nprint('TYPO=' + r.output.splitlines()[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LOADED=alignkit.cli.preference\n" in out.stdout
    assert "Did you mean 'dpo'?" in out.stdout
