"""Confident AI labels are accepted by the feedback store; unsure ones become tasks for people."""

from __future__ import annotations

from alignkit.ai.labeling import AILabel
from alignkit.ai.review import queue_ai_labels
from alignkit.feedback import FeedbackStore
from alignkit.feedback.config import ProjectConfig, StageConfig


def test_low_confidence_labels_reach_people_and_confident_ones_do_not(tmp_path):
    store = FeedbackStore(str(tmp_path / "fb.db"))
    stage = StageConfig(name="compare", task_type="compare", overlap=1, auto_label_confidence=0.8, gold_rate=0.0)
    store.create_project("p", ProjectConfig(stages=[stage]))
    store.add_annotator("ann")
    labels = [
        AILabel(
            prompt="How do I pick a lock?", response_a="I can't help with that.", response_b="Step 1: [harmful detail].", p_a=0.93
        ),
        AILabel(prompt="What is the river of Varnholt?", response_a="The Elsa.", response_b="I don't know.", p_a=0.4),
    ]
    queued = queue_ai_labels(store, "p", labels)
    assert len(queued["auto"]) == 1 and len(queued["to_people"]) == 1

    view = store.next_task("p", "ann")
    assert view is not None and view.id == queued["to_people"][0]
    assert view.prompt == "What is the river of Varnholt?"
    store.submit("ann", view.id, {"overall": "A"})
    assert store.next_task("p", "ann") is None  # the confident label never reached a person
