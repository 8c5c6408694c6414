"""Human feedback: the store, task workflow, assignment, quality control, aggregation, export.

    store = FeedbackStore("feedback.db")            # or postgresql+psycopg://...; runs migrations
    store.create_project("p", preference_project(overlap=3, max_overlap=5, gold_rate=0.1))
    import_items(store, "p", rows); advance(store, "p")
    view = store.next_task("p", "alice"); store.submit("alice", view.id, {"overall": "A"})
    screen(store, "p"); export_dataset(store, "p", "pairs", "pairs.jsonl")

See ``docs/architecture.md`` for the guarantees (one transaction per submit, overlap under
concurrency, leases, gold, screening) and :mod:`alignkit.feedback.aggregate` for the estimators.


Names are re-exported lazily (PEP 562), so importing one submodule does not load the others (nor
torch); new code imports from the defining module.
"""

from __future__ import annotations

from alignkit.plugins import lazy_exports

_HOME = {
    "cohen_kappa": "agreement",
    "fleiss_kappa": "agreement",
    "krippendorff_alpha": "agreement",
    "ComparisonAggregator": "aggregate",
    "DawidSkene": "aggregate",
    "MajorityVote": "aggregate",
    "ranking_to_comparisons": "aggregate",
    "ProjectConfig": "config",
    "StageConfig": "config",
    "preference_project": "config",
    "sft_project": "config",
    "init_db": "db",
    "make_engine": "db",
    "aggregate_stage": "export",
    "build_records": "export",
    "export_dataset": "export",
    "agreement_report": "quality",
    "annotator_quality": "quality",
    "flag_spammers": "quality",
    "screen": "quality",
    "update_super_raters": "quality",
    "ANSWER_SCHEMAS": "schemas",
    "TASK_TYPES": "schemas",
    "InvalidAnswer": "schemas",
    "label_of": "schemas",
    "validate_answer": "schemas",
    "FeedbackError": "store",
    "FeedbackStore": "store",
    "Judgment": "store",
    "NotAllowed": "store",
    "NotAssigned": "store",
    "TaskView": "store",
    "TooManyPending": "store",
    "UnknownAnnotator": "store",
    "UnknownTask": "store",
    "advance": "workflow",
    "import_items": "workflow",
}

__all__ = sorted(_HOME)

__getattr__, __dir__ = lazy_exports(__name__, _HOME)
