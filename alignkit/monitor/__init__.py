"""The continuous loop: a judge watches a deployed model's answers, people correct the flagged ones,
the corrections become training data, and expert benchmarks measure each round.

Names are re-exported lazily (PEP 562), so importing one submodule does not load the others (nor
torch); new code imports from the defining module.
"""

from __future__ import annotations

from alignkit.plugins import lazy_exports

_HOME = {
    "LogEntry": "log",
    "read_log": "log",
    "Verdict": "judge",
    "judge_entries": "judge",
    "queue_for_review": "review",
    "monitor_project": "review",
    "correction_records": "review",
    "export_corrections": "review",
    "run_monitor": "run",
}

__all__ = sorted(_HOME)

__getattr__, __dir__ = lazy_exports(__name__, _HOME)
