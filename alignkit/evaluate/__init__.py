"""Evaluation: battles and ratings (Elo, Bradley–Terry with bootstrap CIs), judges with position
swapping, HHH metrics, alignment tax and the self-contained HTML report."""

from alignkit.evaluate.battles import (
    CRITERIA,
    SwapConsistentJudge,
    normalize_verdict,
    run_battles,
    scorer_judge,
    swap_consistent_judge,
)
from alignkit.evaluate.hhh import alignment_tax, heldout_lm_loss, hhh_metrics
from alignkit.evaluate.ratings import BradleyTerry, EloRating, filter_battles, split_by_criterion, win_rate
from alignkit.evaluate.report import (
    AlignmentTax,
    MetricCI,
    ModelResult,
    RatingRow,
    ReportData,
    Sample,
    WinRateRow,
    findings,
    ladder_rows,
    load_report_data,
    render_report,
    write_report,
)
from alignkit.evaluate.stats import bootstrap_mean_interval, wilson_interval

__all__ = [
    "AlignmentTax", "BradleyTerry", "CRITERIA", "EloRating", "MetricCI", "ModelResult", "RatingRow",
    "ReportData", "Sample", "SwapConsistentJudge", "WinRateRow", "alignment_tax", "bootstrap_mean_interval",
    "filter_battles", "findings", "heldout_lm_loss", "hhh_metrics", "ladder_rows", "load_report_data",
    "normalize_verdict", "render_report", "run_battles", "scorer_judge", "split_by_criterion",
    "swap_consistent_judge", "win_rate", "wilson_interval", "write_report",
]
