"""Send AI preference labels into the feedback store, where low-confidence ones go to people.

Each label becomes a compare task carrying the AI's verdict as a *pre-label* with its confidence.
The store (see :mod:`alignkit.feedback.store`) labels a task automatically when the confidence is
at or above the stage's ``auto_label_confidence``, and otherwise queues it for annotators like any
other task (Kili's workflow): people only see the items the AI was unsure about.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.ai.labeling import AILabel


def queue_ai_labels(
    store: Any, project: str, labels: Sequence[AILabel], stage: str = "compare", model: str = "ai-labeler"
) -> dict[str, list[int]]:
    """Create one compare task per label; returns task ids by outcome (``auto`` / ``to_people``)."""
    out: dict[str, list[int]] = {"auto": [], "to_people": []}
    _, config = store.project(project)
    threshold = config.stage(stage).auto_label_confidence
    for label in labels:
        prompt_text = label.prompt if isinstance(label.prompt, str) else str(label.prompt)
        prompt_id = store.add_prompt(project, prompt_text, status="accepted", source="ai-label")
        ids = [store.add_response(prompt_id, text, model=model) for text in (label.response_a, label.response_b)]
        task = store.add_task(
            project, stage, prompt_id=prompt_id, response_ids=ids, prelabel={"overall": label.winner}, confidence=label.confidence
        )
        auto = threshold is not None and label.confidence >= threshold
        out["auto" if auto else "to_people"].append(task)
    return out
