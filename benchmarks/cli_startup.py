"""How long `alignkit --help` takes, against the Python start-up it cannot avoid (issue #18).

A user types `alignkit --help` (or a command's `--help`) before anything else; the issue asks for
under a second. The baseline is the interpreter with the CLI's own framework (typer, pydantic,
yaml) imported, measured in the same run, so the printed ratio says what alignkit adds on top.
Wall and CPU seconds are the median of ``--repeats`` fresh processes each.

    .venv/bin/python benchmarks/cli_startup.py --repeats 7
    git worktree add /tmp/before <commit>   # then, to time an older tree in the same run:
    .venv/bin/python benchmarks/cli_startup.py --repeats 7 --before /tmp/before
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ALIGNKIT = str(Path(sys.executable).with_name("alignkit"))
CASES = {
    "python + typer, pydantic, yaml (baseline)": [sys.executable, "-c", "import typer, pydantic, yaml"],
    "alignkit --help": [ALIGNKIT, "--help"],
    "alignkit dpo --help": [ALIGNKIT, "dpo", "--help"],
    "alignkit feedback simulate --help": [ALIGNKIT, "feedback", "simulate", "--help"],
}


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + sys of the child) seconds of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # Run from the tree named in PYTHONPATH (if any): `python -c` puts the working folder first on sys.path.
    cwd = env.get("PYTHONPATH")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "100", **env}, cwd=cwd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--before", type=Path, help="an older source tree (git worktree) to time beside this one")
    args = ap.parse_args()
    cases = {name: (cmd, {}) for name, cmd in CASES.items()}
    if args.before:
        run_cli = "import sys; from alignkit.cli import main; sys.argv[0] = 'alignkit'; main()"
        for name, argv in (("alignkit --help", ["--help"]), ("alignkit dpo --help", ["dpo", "--help"])):
            cases[f"{name} ({args.before.name})"] = ([sys.executable, "-c", run_cli, *argv], {"PYTHONPATH": str(args.before)})
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(args.repeats):  # interleaved, so a burst of load hits every case alike
        for name, (cmd, env) in cases.items():
            results[name].append(run_once(cmd, env))
    base_cpu = statistics.median(c for _, c in results[next(iter(cases))])
    print(f"load average at the end: {os.getloadavg()[0]:.2f}; median of {args.repeats} processes each")
    print(f"{'command':<44}{'wall s':>8}{'CPU s':>8}{'CPU / baseline':>16}")
    for name, runs in results.items():
        wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
        print(f"{name:<44}{wall:>8.2f}{cpu:>8.2f}{cpu / base_cpu:>16.2f}")


if __name__ == "__main__":
    main()
