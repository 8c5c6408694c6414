"""The sandbox's knowledge: private facts no corpus holds, exact RAG metrics, and a judge of known error."""

from __future__ import annotations

import math
import random
import re

import pytest

from alignkit.rag.evaluate import METRICS, RagCase, evaluate_rag, judge_error
from alignkit.rag.index import Retriever
from alignkit.sandbox.datasets import base_corpus, sft_demos
from alignkit.sandbox.judge import SandboxJudge
from alignkit.sandbox.knowledge import knowledge, rag_answer, rag_demos, synthetic_entities, truth_rag_metrics


@pytest.fixture(scope="module")
def kn():
    return knowledge(0)


@pytest.fixture(scope="module")
def retriever(kn):
    return Retriever.build(kn.documents)


def test_private_facts_are_in_no_corpus_and_only_retrieval_answers_them(kn):
    world = kn.world
    names = {w.lower() for n in [*world.kb, *(e.name for e in world.unknown)] for w in n.split()}
    private_words = {n.split()[-1].lower() if kn.private[n].type == "person" else n.split()[0].lower() for n in kn.private}
    assert not private_words & names  # no clash with a KB or unknown name
    texts = " ".join(r["prompt"] + " " + r["completion"] for r in base_corpus(world, 3000) + sft_demos(world, 400)).lower()
    assert not private_words & set(re.findall(r"[a-z]+", texts))
    q = kn.retrieval_questions("test")[0]
    assert world.lookup(q.text).category == "unanswerable"  # to the world itself the entity does not exist
    right = kn.ideal_answer(q.text, random.Random(0))
    assert kn.score(q.text, right).behaviour == "correct" and kn.score(q.text, "I don't know.").behaviour == "dont_know"
    other = next(v for v in world.values[q.prompt.attribute] if v != q.prompt.answer)
    assert kn.score(q.text, f"It is {other}.").behaviour == "wrong_fact"
    assert {q.prompt.split for q in kn.questions} == {"train", "test"}
    train_ents = {q.prompt.entity for q in kn.retrieval_questions("train")}
    assert not train_ents & {q.prompt.entity for q in kn.retrieval_questions("test")}


def test_truth_metrics_hand_worked(kn, retriever):
    q = kn.retrieval_questions("test")[0]
    hits = retriever.retrieve(q.text, k=3)
    assert hits[0].id == q.gold_doc
    good = truth_rag_metrics(kn, q.text, kn.ideal_answer(q.text, random.Random(0)), hits)
    assert good == {
        "faithfulness": 1.0,
        "answer_relevancy": 1.0,
        "context_precision": 1.0,
        "context_recall": 1.0,
        "n_claims": 1.0,
    }
    other = next(v for v in kn.world.values[q.prompt.attribute] if v != q.prompt.answer)
    wrong = truth_rag_metrics(kn, q.text, f"It is {other}. It is {q.prompt.answer}.", hits[1:])
    assert wrong["faithfulness"] == 0.0 and wrong["context_recall"] == 0.0 and wrong["context_precision"] == 0.0
    half = truth_rag_metrics(kn, q.text, f"It is {other}. It is {q.prompt.answer}.", [hits[1], hits[0]])
    assert half["faithfulness"] == 0.5 and half["context_precision"] == 0.5
    dk = truth_rag_metrics(kn, q.text, "I don't know.", hits)
    assert math.isnan(dk["faithfulness"]) and dk["answer_relevancy"] == 0.0


def _cases(kn, retriever, n=60):
    rng = random.Random(1)
    cases, truths = [], []
    for i, q in enumerate(kn.retrieval_questions("all")[:n]):
        hits = retriever.retrieve(q.text, k=3)
        other = next(v for v in kn.world.values[q.prompt.attribute] if v != q.prompt.answer)
        answer = [
            kn.ideal_answer(q.text, rng),
            f"It is {other}. I hope that helps.",
            "I don't know.",
            f"{q.prompt.answer}. {other}.",
        ][i % 4]
        used = hits if i % 3 else hits[1:]
        cases.append(RagCase(q.text, answer, [h.text for h in used], kn.ideal_answer(q.text, rng, cite=False)))
        truths.append(truth_rag_metrics(kn, q.text, answer, used))
    return cases, truths


def test_a_perfect_judge_reproduces_the_exact_metrics(kn, retriever):
    cases, truths = _cases(kn, retriever)
    rows = evaluate_rag(SandboxJudge(kn, accuracy=1.0), cases)
    for m in METRICS:
        est, tru = [r[m] for r in rows], [t[m] for t in truths]
        err = judge_error(est, tru)
        assert err["mae"] == pytest.approx(0.0, abs=1e-9), m
        assert [math.isnan(x) for x in est] == [math.isnan(x) for x in tru] or m != "faithfulness"


def test_judge_error_grows_with_the_judges_own_error(kn, retriever):
    cases, truths = _cases(kn, retriever, n=120)
    errs = {}
    for acc in (0.95, 0.7):
        rows = evaluate_rag(SandboxJudge(kn, accuracy=acc, seed=3), cases)
        errs[acc] = judge_error([r["context_recall"] for r in rows], [t["context_recall"] for t in truths])["error_rate"]
    # context recall here is one verdict per case, so its error rate is the judge's verdict error rate
    assert 0.0 < errs[0.95] < 0.12 and 0.18 < errs[0.7] < 0.42


def test_synthetic_training_entities_never_touch_the_test_entities(kn):
    ents = synthetic_entities(kn, 20, seed=3)
    assert len(ents) == 60 and len({e.name for e in ents}) == 60
    taken = {w.lower() for n in [*kn.world.kb, *(e.name for e in kn.world.unknown), *kn.private] for w in n.split()}
    distinct = {e.name.split()[-1].lower() if e.type == "person" else e.name.split()[0].lower() for e in ents}
    assert not distinct & taken
    for e in ents:  # values from the world's closed lists: tokens the base model produces
        for attr, v in e.attributes.items():
            assert v in kn.world.values[attr]


def test_rag_demos_answer_from_the_passage_or_abstain(kn, retriever):
    demos = rag_demos(kn, retriever, 400, seed=1, k=2, rag_share=1.0)
    assert len(demos) == 400 and all(d["category"] == "rag" for d in demos)
    test_names = {q.prompt.entity for q in kn.retrieval_questions("test")}
    n_known = 0
    for d in demos:
        passages = dict(re.findall(r"^\[(kb-\d{4})\] (.*)$", d["prompt"], flags=re.M))
        assert len(passages) == 2 and not any(name in d["prompt"] for name in test_names)
        if d["behaviour"] == "correct":
            n_known += 1
            value, cited = re.fullmatch(r"(.+) \[(kb-\d{4})\]", d["completion"]).groups()
            assert cited in passages and value in passages[cited]  # the value is read off the cited passage
        else:
            assert "I don't know" in d["completion"]
    assert 0.7 < n_known / len(demos) < 1.0  # retrieval misses some: those teach abstention
    assert rag_answer("Ysla", "kb-0330", "Venru", "river", "fact") == "The river of Venru is the Ysla. [kb-0330]"
    with pytest.raises(ValueError, match="answer style"):
        rag_answer("Ysla", "kb-0330", "Venru", "river", "short")
    # the value-first answer is what the ground truth scores as correct for a retrieval question
    q = kn.retrieval_questions("test")[0]
    assert kn.score(q.text, rag_answer(q.prompt.answer, q.gold_doc, q.prompt.entity, q.prompt.attribute)).behaviour == "correct"
