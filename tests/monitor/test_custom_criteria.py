"""A custom criterion ("brand_tone") end to end: asked in compare tasks, exported per criterion,
selected as its own reward-model target, rated in evaluation, and scored by an expert benchmark."""

from __future__ import annotations

import pytest

from alignkit.evaluate.battles import run_battles
from alignkit.evaluate.ratings import BradleyTerry
from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.export import build_records
from alignkit.feedback.schemas import InvalidAnswer
from alignkit.feedback.store import FeedbackStore
from alignkit.feedback.workflow import import_items
from alignkit.train.reward_model import orient

WARM, COLD = "Happy to help! Here it is.", "Here."


def test_brand_tone_from_compare_tasks_to_reward_data_and_ratings(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'c.db'}")
    stage = StageConfig(name="compare", task_type="compare", overlap=1, payload={"criteria": ["helpful", "brand_tone"]})
    store.create_project("tone", ProjectConfig(stages=[stage]))
    import_items(store, "tone", [{"prompt": f"q{i}", "chosen": WARM, "rejected": COLD} for i in range(6)], stage="compare")
    store.add_annotator("ann")
    n = 0
    while (view := store.next_task("tone", "ann")) is not None:
        warm = "A" if view.responses[0] == WARM else "B"
        cold = "B" if warm == "A" else "A"
        # brand tone prefers the warm answer; helpfulness (here) prefers the terse one on half the tasks
        helpful = warm if n % 2 else cold
        with pytest.raises(InvalidAnswer, match="not a criterion"):
            store.submit("ann", view.id, {"overall": warm, "criteria": {"tone_of_voice": warm}})
        store.submit("ann", view.id, {"overall": warm, "criteria": {"brand_tone": warm, "helpful": helpful}})
        n += 1
    records = build_records(store, "tone", "pairs", method="majority")
    assert len(records) == 6 and all(r["chosen"] == WARM and r["criteria"]["brand_tone"] == "chosen" for r in records)
    assert sorted(r["criteria"]["helpful"] for r in records) == ["chosen"] * 3 + ["rejected"] * 3
    # the reward model's data path: trained on brand_tone alone, every pair keeps warm > cold;
    # on helpfulness, half the pairs are flipped
    tone = [orient(r, "brand_tone", None) for r in records]
    assert all(t is not None and t["chosen"] == WARM for t in tone)
    helpful = [orient(r, "helpful", None) for r in records]
    assert sum(h is not None and h["chosen"] == COLD for h in helpful) == 3
    store.close()

    # evaluation: a judge that rates brand tone separately gives it its own Bradley-Terry ladder
    def judge(prompt, a, b):
        tone = "A" if a.startswith("Happy") else "B" if b.startswith("Happy") else "tie"
        return {"overall": "tie", "criteria": {"brand_tone": tone}}

    battles = run_battles({"warm": [WARM] * 10, "cold": [COLD] * 10}, [f"q{i}" for i in range(10)], judge)
    bt = BradleyTerry(criterion="brand_tone").fit(battles)
    overall = BradleyTerry(criterion="overall").fit(battles)
    assert bt.ratings_["warm"] > bt.ratings_["cold"] + 100
    assert overall.ratings_["warm"] == pytest.approx(overall.ratings_["cold"], abs=1e-6)
