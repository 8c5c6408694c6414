"""Wall time of `alignkit demo` from scratch (fresh workdir), per stage and in total.

The target is at most 5 minutes on 2 CPU cores. A second, fully cached run is timed too: it is
the baseline overhead (imports, hashing, loading outputs) measured in the same run.

    python benchmarks/demo_time.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_demo(workdir: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "alignkit", "demo", "--workdir", str(workdir)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "demo"
        cold = run_demo(workdir)
        cached = run_demo(workdir)
        print(f"{'stage':<12}{'seconds':>9}")
        for stage_file in sorted(workdir.glob("*/stage.json"), key=lambda p: p.stat().st_mtime):
            print(f"{stage_file.parent.name:<12}{json.loads(stage_file.read_text())['seconds']:>9.1f}")
        print(f"\nfrom scratch: {cold:.1f} s ({cold / 300:.2f} of the 5-minute target)")
        print(f"fully cached rerun: {cached:.1f} s (from-scratch / cached = {cold / cached:.1f}x)")


if __name__ == "__main__":
    main()
