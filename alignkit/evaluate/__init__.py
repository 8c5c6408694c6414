"""Evaluation: battles and ratings (Elo, Bradley–Terry with bootstrap CIs), judges with position
swapping, HHH metrics, alignment tax and the self-contained HTML report.

Names are re-exported lazily (PEP 562), so importing one submodule does not load the others (nor
torch); new code imports from the defining module.
"""

from __future__ import annotations

from alignkit.plugins import lazy_exports

_HOME = {
    "CRITERIA": "battles",
    "SwapConsistentJudge": "battles",
    "normalize_verdict": "battles",
    "run_battles": "battles",
    "scorer_judge": "battles",
    "swap_consistent_judge": "battles",
    "alignment_tax": "hhh",
    "heldout_lm_loss": "hhh",
    "hhh_metrics": "hhh",
    "BradleyTerry": "ratings",
    "EloRating": "ratings",
    "filter_battles": "ratings",
    "split_by_criterion": "ratings",
    "win_rate": "ratings",
    "AlignmentTax": "report",
    "MetricCI": "report",
    "ModelResult": "report",
    "RatingRow": "report",
    "ReportData": "report",
    "Sample": "report",
    "WinRateRow": "report",
    "findings": "report",
    "ladder_rows": "report",
    "load_report_data": "report",
    "render_report": "report",
    "write_report": "report",
    "bootstrap_mean_interval": "stats",
    "wilson_interval": "stats",
}

__all__ = sorted(_HOME)

__getattr__, __dir__ = lazy_exports(__name__, _HOME)
