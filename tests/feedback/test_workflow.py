"""Stages feed each other; exports carry provenance and load as alignkit records."""

import functools
import warnings

import pytest
from sqlalchemy import select

from alignkit.data import read_records
from alignkit.feedback import export
from alignkit.feedback.aggregate import DawidSkene
from alignkit.feedback.config import ProjectConfig, StageConfig, sft_project
from alignkit.feedback.export import aggregate_stage, build_records, export_dataset
from alignkit.feedback.models import GoldAnswer, Response, Task
from alignkit.feedback.workflow import advance, import_items


def _work_all(store, project, names, answer):
    done = 0
    progress = True
    while progress:
        progress = False
        for name in names:
            view = store.next_task(project, name)
            if view is not None:
                store.submit(name, view.id, answer(name, view))
                done += 1
                progress = True
    return done


def test_sft_flow_verify_write_review_export(store, tmp_path):
    store.create_project("sft", sft_project(overlap=2))
    for n in ("w1", "w2"):
        store.add_annotator(n)
    for n in ("r1", "r2"):
        store.add_annotator(n, role="reviewer")
    import_items(store, "sft", [{"prompt": "How do rivers form?"}, {"prompt": "asdf qwer"}, {"prompt": "Name a colour."}])
    assert advance(store, "sft") == {"verify": 3, "write": 0, "review": 0}

    def verify(name, view):
        ok = "asdf" not in view.prompt
        return {"accept": ok} if ok else {"accept": False, "reason": "gibberish"}

    _work_all(store, "sft", ["w1", "w2"], verify)
    assert advance(store, "sft") == {"verify": 0, "write": 2, "review": 0}  # the gibberish prompt stopped here

    _work_all(store, "sft", ["w1"], lambda n, v: {"text": f"An answer to: {v.prompt}", "domain": "general"})
    assert advance(store, "sft") == {"verify": 0, "write": 0, "review": 2}
    assert advance(store, "sft") == {"verify": 0, "write": 0, "review": 0}  # idempotent

    def review(name, view):
        if "colour" in view.prompt:
            return {"decision": "edit", "edited_text": "Blue." if name == "r2" else "Blue!"}
        return {"decision": "accept"}

    _work_all(store, "sft", ["r1", "r2"], review)
    path, n = export_dataset(store, "sft", "sft", tmp_path / "sft.jsonl")
    rows = read_records(path).records
    assert n == 2 and {r["completion"] for r in rows} == {"An answer to: How do rivers form?", "Blue."}
    edited = next(r for r in rows if r["edited"])
    assert edited["author"] == "w1" and sorted(edited["annotator_ids"]) == ["r1", "r2"] and edited["agreement"] == 1.0


def test_preference_flow_with_model_responses_and_provenance(store, tmp_path):
    stage = StageConfig(
        name="compare",
        task_type="compare",
        input="response_pairs",
        overlap=3,
        payload={"criteria": ["helpful", "honest", "harmless", "brand_tone"]},
    )
    store.create_project("pref", ProjectConfig(stages=[stage]))
    for n in ("a", "b", "c"):
        store.add_annotator(n)
    import_items(
        store,
        "pref",
        [
            {"prompt": f"q{i}", "responses": [{"text": f"good {i}", "model": "m-good"}, {"text": f"bad {i}", "model": "m-bad"}]}
            for i in range(4)
        ],
    )
    assert advance(store, "pref") == {"compare": 4}

    def judge(name, view):
        good = "A" if view.responses[0].startswith("good") else "B"
        if view.prompt == "q3":
            return {"overall": "tie"}
        overall = good if not (name == "c" and view.prompt == "q0") else ("B" if good == "A" else "A")
        return {"overall": overall, "criteria": {"brand_tone": good}, "harms": ["bias"] if name == "a" else []}

    _work_all(store, "pref", ["a", "b", "c"], judge)
    recs = build_records(store, "pref", "pairs", method="majority")
    assert len(recs) == 3  # the tie (q3) is kept as raw judgments but is not a training pair
    by_prompt = {r["prompt"]: r for r in recs}
    q0 = by_prompt["q0"]
    assert q0["chosen"] == "good 0" and q0["rejected"] == "bad 0"
    assert q0["agreement"] == pytest.approx(2 / 3) and sorted(q0["annotator_ids"]) == ["a", "b", "c"]
    assert q0["criteria"]["brand_tone"] == "chosen" and len(q0["judgments"]) == 3 and q0["created_at"]
    assert by_prompt["q1"]["agreement"] == 1.0
    # quality filter
    assert len(build_records(store, "pref", "pairs", method="majority", min_agreement=0.9)) == 2
    path, n = export_dataset(store, "pref", "pairs", tmp_path / "pairs.jsonl")
    assert read_records(path).kind == "pair" and n == 3
    aggs = aggregate_stage(store, "pref", "compare", "majority")
    assert sorted(a.label for a in aggs.values()) == ["A", "A", "A", "tie"]
    # Dawid–Skene converges here silently; a fit stopped by its round cap says so.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert sorted(a.label for a in aggregate_stage(store, "pref", "compare").values()) == ["A", "A", "A", "tie"]


def test_aggregate_warns_when_dawid_skene_hits_its_cap(store, monkeypatch):
    store.create_project("p", ProjectConfig(stages=[StageConfig(name="bin", task_type="binary", input="responses", overlap=2)]))
    for n in ("a", "b"):
        store.add_annotator(n)
    import_items(store, "p", [{"prompt": f"q{i}", "responses": [f"r{i}"]} for i in range(3)])
    advance(store, "p")
    _work_all(store, "p", ["a", "b"], lambda name, view: {"good": name == "a" or view.prompt == "q0"})
    monkeypatch.setattr(export, "DawidSkene", functools.partial(DawidSkene, n_iter=2, tol=-1.0))
    with pytest.warns(RuntimeWarning, match="cap of 2 rounds"):
        aggs = aggregate_stage(store, "p", "bin")
    assert len(aggs) == 3


def test_binary_and_ranking_exports(store, tmp_path):
    stages = [
        StageConfig(name="bin", task_type="binary", input="responses", overlap=2),
        StageConfig(name="rank", task_type="rank", input="response_sets", overlap=2, payload={"k": 3}),
    ]
    store.create_project("p", ProjectConfig(stages=stages))
    for n in ("a", "b"):
        store.add_annotator(n)
    import_items(store, "p", [{"prompt": "q", "responses": ["best", "mid", "worst"]}])
    assert advance(store, "p") == {"bin": 3, "rank": 1}

    def answer(name, view):
        if view.type == "binary":
            return {"good": view.responses[0] != "worst"}
        order = sorted(range(3), key=lambda i: ["best", "mid", "worst"].index(view.responses[i]))
        return {"order": order}

    _work_all(store, "p", ["a", "b"], answer)
    binary = build_records(store, "p", "binary", method="majority")
    assert {r["completion"]: r["label"] for r in binary} == {"best": True, "mid": True, "worst": False}
    ranking = build_records(store, "p", "rankings")
    assert ranking[0]["completions"] == ["best", "mid", "worst"]
    path, _ = export_dataset(store, "p", "rankings", tmp_path / "rank.jsonl")
    assert read_records(path).kind == "ranking"


def test_rank_answer_must_fit_the_task(store):
    stages = [StageConfig(name="rank", task_type="rank", input="response_sets", overlap=1)]
    store.create_project("p", ProjectConfig(stages=stages))
    store.add_annotator("a")
    import_items(store, "p", [{"prompt": "q", "responses": ["x", "y", "z"]}])
    advance(store, "p")
    v = store.next_task("p", "a")
    from alignkit.feedback.schemas import InvalidAnswer

    before = store.snapshot()
    with pytest.raises(InvalidAnswer, match="permutation of 0..2"):
        store.submit("a", v.id, {"order": [0, 1]})
    assert store.snapshot() == before


def test_gold_fraction_on_pairs_makes_gold_from_the_chosen_side(store):
    """The README's import line: a pairs file, ``--stage compare --gold-fraction``; the chosen side is the gold answer."""
    store.create_project("g", ProjectConfig(stages=[StageConfig(name="compare", task_type="compare", input="response_pairs")]))
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(200)]
    with pytest.raises(ValueError, match="--stage compare"):
        import_items(store, "g", rows[:1], gold_fraction=0.5)  # no stage: refused, not silently 0 gold
    counts = import_items(store, "g", rows, stage="compare", gold_fraction=0.25, seed=3)
    assert 25 <= counts["gold"] <= 75  # 25 % of 200 = 50, binomial sd ~6
    with store.read() as s:
        golds = s.execute(select(Task, GoldAnswer).join(GoldAnswer, GoldAnswer.task_id == Task.id)).all()
        texts = {r.id: r.text for r in s.scalars(select(Response))}
        assert len(golds) == counts["gold"]
        for task, answer in golds:
            a, b = (texts[i] for i in task.response_ids)
            chosen = a if answer.answer["overall"] == "A" else b
            assert task.is_gold and chosen.startswith("good")
