"""People mode's label noise and harms: posterior labels in Bradley–Terry, the prompt-resampling
bootstrap, and harm categories pushed to the store and read back."""

import json
import math

import numpy as np
import pytest

from alignkit.evaluate.ratings import BradleyTerry


def _pair(p_a, n, prompt_offset=0, copies=1):
    return [
        {
            "model_a": "x",
            "model_b": "y",
            "winner": "model_a" if p_a[0] >= 0.5 else "model_b",
            "posterior": list(p_a),
            "prompt_index": prompt_offset + i,
        }
        for i in range(n)
        for _ in range(copies)
    ]


def test_posterior_counts_as_expected_outcome_hand_worked():
    # 10 battles, each P(x better) = 0.7: expected 7 wins to 3, so the BT fit has
    # P(x beats y) = 0.7 and the gap is 400 * log10(7/3) = 147.2 Elo points.
    bt = BradleyTerry(reg=0.0)
    bt.bootstrap_clustered(_pair([0.7, 0.3, 0.0], 10), rounds=0)
    assert bt.ratings_["x"] - bt.ratings_["y"] == pytest.approx(400 * math.log10(7 / 3), abs=1e-6)
    # The argmax label would say x won all ten (an infinite gap, held by the tiny penalty only).
    hard = BradleyTerry().fit([{"model_a": "x", "model_b": "y", "winner": "model_a"}] * 10)
    assert hard.ratings_["x"] - hard.ratings_["y"] > 1000
    # A tie's posterior mass counts half each way: [0.4, 0.2, 0.4] is 0.6 for x.
    bt.bootstrap_clustered(_pair([0.4, 0.2, 0.4], 10), rounds=0)
    assert bt.ratings_["x"] - bt.ratings_["y"] == pytest.approx(400 * math.log10(6 / 4), abs=1e-6)


def test_one_hot_posteriors_and_one_battle_clusters_match_the_battle_bootstrap_in_distribution():
    rng = np.random.default_rng(0)
    battles = [
        {"model_a": a, "model_b": b, "winner": w}
        for a, b, pa in [("x", "y", 0.7), ("y", "z", 0.6), ("x", "z", 0.8)]
        for w in rng.choice(["model_a", "model_b"], size=150, p=[pa, 1 - pa])
    ]
    plain = BradleyTerry()
    plain.bootstrap(battles, rounds=300, seed=0)
    clustered = BradleyTerry()
    clustered.bootstrap_clustered(battles, rounds=300, seed=1)  # no prompt_index: every battle its own cluster
    assert clustered.ratings_ == pytest.approx(plain.ratings_)
    sd_plain = np.nanstd(plain.bootstrap_ratings_, axis=0)
    sd_clustered = np.nanstd(clustered.bootstrap_ratings_, axis=0)
    assert sd_clustered == pytest.approx(sd_plain, rel=0.2)


def test_resampling_prompts_widens_the_interval_when_battles_on_a_prompt_repeat():
    # Each of 30 prompts contributes 5 identical battles: 150 battles but only 30 independent draws,
    # so the honest standard error is sqrt(5) ~ 2.2 times the battle bootstrap's.
    rng = np.random.default_rng(1)
    battles = []
    for i, w in enumerate(rng.choice(["model_a", "model_b"], size=30, p=[0.65, 0.35])):
        battles += [{"model_a": "x", "model_b": "y", "winner": w, "prompt_index": i}] * 5
    by_battle = BradleyTerry()
    by_battle.bootstrap(battles, rounds=400, seed=0)
    by_prompt = BradleyTerry()
    by_prompt.bootstrap_clustered(battles, rounds=400, seed=0)
    ratio = np.nanstd(by_prompt.bootstrap_ratings_[:, 0]) / np.nanstd(by_battle.bootstrap_ratings_[:, 0])
    assert 1.8 < ratio < 2.7


def test_uncertain_posteriors_keep_the_point_and_are_drawn_not_averaged():
    sure = _pair([1.0, 0.0, 0.0], 30) + _pair([0.0, 1.0, 0.0], 20, prompt_offset=30)
    unsure = _pair([0.6, 0.4, 0.0], 50)  # the same expected 30 : 20, but every label uncertain
    a, b = BradleyTerry(), BradleyTerry()
    ci_sure = a.bootstrap_clustered(sure, rounds=400, seed=0)
    ci_unsure = b.bootstrap_clustered(unsure, rounds=400, seed=0)
    assert a.ratings_["x"] == pytest.approx(b.ratings_["x"], abs=1e-6)
    # Worked by hand, share S of x's wins in one round, copies c ~ Multinomial(50, 1/50 each):
    # sure labels (30 of 50 won): Var S = 0.6 * 0.4 / 50 = 0.0048.
    # unsure labels, one draw y_i ~ Bernoulli(0.6) per battle shared by its copies: E[S | c] = 0.6,
    # Var S = E[sum c_i^2] * 0.24 / 50^2 with E[c_i^2] = 50 (1/50)(49/50) + 1 = 1.98, so 0.009504:
    # 1.98 x the sure variance (the sampling noise plus the labels' own), widths sqrt(1.98) = 1.41 x.
    # (A draw per copy would give 50 * 0.24 / 50^2 = 0.0048, the sure width: the label noise lost.)
    # Resampling the expected outcomes (0.6 each) without drawing gives a zero-width interval.
    w_sure = ci_sure["x"][1] - ci_sure["x"][0]
    w_unsure = ci_unsure["x"][1] - ci_unsure["x"][0]
    assert w_unsure / w_sure == pytest.approx(math.sqrt(1.98), rel=0.12)
    expected_only = BradleyTerry().bootstrap_clustered(unsure, rounds=50, seed=0, draw=False)
    assert expected_only["x"][1] - expected_only["x"][0] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="posterior"):
        BradleyTerry().bootstrap_clustered(_pair([0.6, 0.6, 0.0], 3), rounds=2)
    with pytest.raises(ValueError, match="Davidson"):
        BradleyTerry(ties="davidson").bootstrap_clustered(unsure, rounds=2)


def test_people_tasks_carry_harm_categories_and_read_back_attributes_them(tmp_path):
    from alignkit.evaluate.people import harm_rates, push_comparisons, read_back
    from alignkit.feedback.schemas import InvalidAnswer
    from alignkit.feedback.store import FeedbackStore

    prompts = [{"prompt": f"Question {i}?", "category": "c"} for i in range(2)]
    answers = {"safe": ["fine answer", "fine again"], "risky": ["risky answer", "risky again"]}
    jobs = [(0, "safe", "risky"), (1, "risky", "safe")]
    store = FeedbackStore(str(tmp_path / "f.db"))
    tasks = push_comparisons(
        store, "ev", tmp_path, prompts, answers, jobs, ["overall", "harmless"], harms=["dangerous", "insult"]
    )
    assert json.loads((tmp_path / "people_tasks.json").read_text())["harms"] == ["dangerous", "insult"]
    for name in ("a1", "a2", "a3"):
        store.add_annotator(name, status="active", exist_ok=True, project="ev")
    for name in ("a1", "a2", "a3"):
        while (view := store.next_task("ev", name)) is not None:
            assert view.payload["harms"] == ["dangerous", "insult"]
            t = next(x for x in tasks if x["task_id"] == view.id)
            pick = "A" if t["shown"][0] == "safe" else "B"
            ticks = ["dangerous"] if name != "a3" else ["insult"]  # "insult" by one of three: not counted
            with pytest.raises(InvalidAnswer, match="harm"):  # not a category of this task
                store.submit(name, view.id, {"overall": pick, "harms": ["sexual"]})
            store.submit(name, view.id, {"overall": pick, "criteria": {"harmless": pick}, "harms": ticks})
    battles = read_back(store, "ev", tasks, prompts, ["overall", "harmless"])
    store.close()
    overall = [b for b in battles if b["criterion"] == "overall"]
    assert len(overall) == 2 and len(battles) == 4
    for b in overall:
        safe_side = 0 if b["model_a"] == "safe" else 1
        assert b["posterior"][safe_side] > 0.9  # oriented to the record, not to the shown order
        assert b["harms"] == {"risky": ["dangerous"], "safe": []}  # on the loser of "harmless"
    assert harm_rates(battles) == {"risky": {"dangerous": 1.0}, "safe": {"dangerous": 0.0}}


def test_report_shows_the_harm_rates_people_reported():
    from alignkit.evaluate.report import ReportData, render_report

    html = render_report(ReportData(people={"tasks": 2, "answered": 2, "harm_rates": {"risky": {"dangerous": 0.5}}}))
    section = html.split("People: harms reported", 1)[1].split("</section>", 1)[0]
    assert "<th>dangerous</th>" in section and "<th>risky</th>" in section and "50" in section
    assert 'class="empty"' not in section
    assert "No harms reported by people" in render_report(ReportData())


def test_posterior_rounds_replace_the_posterior_round_by_round():
    # People mode passes each battle's posterior under every annotator resample: round r uses row r.
    battles = _pair([0.5, 0.5, 0.0], 10)
    for b in battles:
        b["posterior_rounds"] = np.array([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.1, 0.9, 0.0]])
    bt = BradleyTerry(reg=0.0)
    bt.bootstrap_clustered(battles, rounds=4, seed=0, draw=False)
    x = bt.models_.index("x")
    gap = 400 * math.log10(9)  # expected outcome 0.9 on every battle of the round
    assert bt.ratings_["x"] == pytest.approx(1000.0, abs=1e-6)  # the point uses the one posterior (0.5)
    assert bt.bootstrap_ratings_[:2, x] == pytest.approx(1000 + gap / 2, abs=1e-3)
    assert bt.bootstrap_ratings_[2:, x] == pytest.approx(1000 - gap / 2, abs=1e-3)
    with pytest.raises(ValueError, match="posterior_rounds"):
        BradleyTerry().bootstrap_clustered(battles, rounds=3, seed=0)


def test_annotator_resamples_move_the_posteriors_of_the_tasks_they_answered(tmp_path):
    from alignkit.evaluate.people import _posteriors, push_comparisons
    from alignkit.feedback.store import FeedbackStore

    prompts = [{"prompt": f"Question {i}?", "category": "c"} for i in range(6)]
    answers = {"p": [f"p{i}" for i in range(6)], "q": [f"q{i}" for i in range(6)]}
    store = FeedbackStore(str(tmp_path / "f.db"))
    tasks = push_comparisons(store, "ev", tmp_path, prompts, answers, [(i, "p", "q") for i in range(6)], ["overall"])
    for name in ("a1", "a2", "a3"):
        store.add_annotator(name, status="active", exist_ok=True, project="ev")
    for name in ("a1", "a2", "a3"):
        while (view := store.next_task("ev", name)) is not None:
            t = next(x for x in tasks if x["task_id"] == view.id)
            p_first = t["shown"][0] == "p"
            pick = ("A" if p_first else "B") if name != "a3" else ("B" if p_first else "A")  # a3 always disagrees
            store.submit(name, view.id, {"overall": pick})
    full, rounds = _posteriors(store, "ev", "dawid_skene", seed=0, rounds=30)
    store.close()
    assert set(rounds) == set(full) and all(len(r) == 30 for r in rounds.values())
    task = tasks[0]["task_id"]
    p_label = "A" if tasks[0]["shown"][0] == "p" else "B"
    values = [r[p_label] for r in rounds[task]]
    assert max(values) - min(values) > 0.05  # rounds without a1/a2 or with a3 twice disagree
    assert all(abs(sum(r.values()) - 1) < 1e-9 for r in rounds[task])
