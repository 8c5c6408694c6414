"""Human feedback: the store, task workflow, assignment, quality control, aggregation, export.

    store = FeedbackStore("feedback.db")            # or postgresql+psycopg://...; runs migrations
    store.create_project("p", preference_project(overlap=3, max_overlap=5, gold_rate=0.1))
    import_items(store, "p", rows); advance(store, "p")
    view = store.next_task("p", "alice"); store.submit("alice", view.id, {"overall": "A"})
    screen(store, "p"); export_dataset(store, "p", "pairs", "pairs.jsonl")

See ``docs/architecture.md`` for the guarantees (one transaction per submit, overlap under
concurrency, leases, gold, screening) and :mod:`alignkit.feedback.aggregate` for the estimators.
"""

from alignkit.feedback.agreement import cohen_kappa, fleiss_kappa, krippendorff_alpha
from alignkit.feedback.aggregate import BradleyTerry, DawidSkene, MajorityVote, ranking_to_comparisons
from alignkit.feedback.config import ProjectConfig, StageConfig, preference_project, sft_project
from alignkit.feedback.db import init_db, make_engine
from alignkit.feedback.export import aggregate_stage, build_records, export_dataset
from alignkit.feedback.quality import agreement_report, annotator_quality, flag_spammers, screen, update_super_raters
from alignkit.feedback.schemas import ANSWER_SCHEMAS, TASK_TYPES, InvalidAnswer, label_of, validate_answer
from alignkit.feedback.store import (
    FeedbackError, FeedbackStore, Judgment, NotAllowed, NotAssigned, TaskView, TooManyPending, UnknownAnnotator, UnknownTask,
)
from alignkit.feedback.workflow import advance, import_items

__all__ = [
    "ANSWER_SCHEMAS", "TASK_TYPES", "BradleyTerry", "DawidSkene", "FeedbackError", "FeedbackStore", "InvalidAnswer",
    "Judgment", "MajorityVote", "NotAllowed", "NotAssigned", "ProjectConfig", "StageConfig", "TaskView", "TooManyPending",
    "UnknownAnnotator", "UnknownTask", "advance", "aggregate_stage", "agreement_report", "annotator_quality",
    "build_records", "cohen_kappa", "export_dataset", "flag_spammers", "fleiss_kappa", "import_items", "init_db",
    "krippendorff_alpha", "label_of", "make_engine", "preference_project", "ranking_to_comparisons", "screen",
    "sft_project", "update_super_raters", "validate_answer",
]
