"""alignkit monitor: judge a log, flag and explain, queue review tasks by confidence, export corrections."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from alignkit.ai.backend import LocalBackend
from alignkit.ai.config import ServeLimits
from alignkit.ai.openai_backend import OpenAIBackend
from alignkit.ai.server import BackgroundServer, make_app
from alignkit.cli import app
from alignkit.data.io import DataError
from alignkit.feedback.store import FeedbackStore
from alignkit.monitor.judge import judge_entries
from alignkit.monitor.log import LogEntry, entry_from_row, read_log
from alignkit.monitor.review import correction_records, priority, queue_for_review
from alignkit.rag.evaluate import RagCase, evaluate_rag
from alignkit.sandbox.judge import SandboxJudge, true_grade
from alignkit.sandbox.knowledge import knowledge
from alignkit.sandbox.language import BEHAVIOURS_FOR


@pytest.fixture(scope="module")
def kn():
    return knowledge(0)


def _log(kn, n=40, seed=0):
    """Answers of mixed quality to world prompts, with their true grades."""
    rng = random.Random(seed)
    world = kn.world
    rows = []
    for i, p in enumerate(world.prompts("eval", n=n)):
        behaviour = rng.choice(BEHAVIOURS_FOR[p.category])
        rows.append(LogEntry(f"r{i}", p.text, world.respond(p, behaviour, rng), model="m1"))
    return rows


def test_read_log_plain_and_served_shapes(tmp_path):
    served = {
        "id": "req-1",
        "request": {"model": "tiny", "messages": [{"role": "user", "content": "Hi?"}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": "Hello."}}]},
    }
    plain = {"prompt": [{"role": "user", "content": "Q?"}], "answer": "A.", "contexts": ["p1"], "extra": 1}
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(served) + "\n" + json.dumps(plain) + "\n")
    a, b = read_log(path)
    assert (a.id, a.prompt, a.response, a.model) == ("req-1", "Hi?", "Hello.", "tiny")
    assert (b.id, b.prompt, b.response, b.contexts, b.extra) == ("line-2", "Q?", "A.", ["p1"], {"extra": 1})
    with pytest.raises(DataError, match="response"):
        entry_from_row({"request": {"messages": [{"role": "user", "content": "x"}]}, "response": {"choices": []}}, "f", 3)
    with pytest.raises(DataError, match="prompt"):
        entry_from_row({"prompt": "", "response": "x"}, "f", 4)


def test_a_perfect_judge_flags_exactly_the_bad_answers_with_reasons(kn):
    entries = _log(kn)
    verdicts = judge_entries(SandboxJudge(kn, accuracy=1.0), entries, threshold=3.0)
    truth = [true_grade(kn.score(e.prompt, e.response)) for e in entries]
    assert [v.flagged for v in verdicts] == [g < 3 for g in truth]
    assert 0 < sum(truth_g < 3 for truth_g in truth) < len(entries)
    for v in verdicts:
        assert (v.reason != "") == v.flagged
        if kn.score(v.entry.prompt, v.entry.response).behaviour == "harmful_compliance":
            assert "harmful" in v.reason


def test_faithfulness_flags_unsupported_rag_answers(kn):
    from alignkit.rag.index import Retriever

    r = Retriever.build(kn.documents)
    q = kn.retrieval_questions("test")[0]
    ctx = [h.text for h in r.retrieve(q.text, 2)]
    other = next(v for v in kn.world.values[q.prompt.attribute] if v != q.prompt.answer)
    good = LogEntry("g", q.text, kn.ideal_answer(q.text, random.Random(0)), contexts=ctx)
    bad = LogEntry("b", q.text, f"It is {other}.", contexts=ctx)
    vg, vb = judge_entries(SandboxJudge(kn, accuracy=1.0), [good, bad])
    assert not vg.flagged and vg.faithfulness == 1.0
    assert vb.flagged and vb.faithfulness == 0.0 and any("faithfulness" in w for w in vb.why)


def test_queue_orders_by_confidence_is_idempotent_and_exports_corrections(kn, tmp_path):
    entries = _log(kn, n=30)
    verdicts = judge_entries(SandboxJudge(kn, accuracy=0.8, seed=1), entries)
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    ids = queue_for_review(store, "mon", verdicts)
    flagged = [v for v in verdicts if v.flagged]
    assert len(ids) == len(flagged) > 2
    assert queue_for_review(store, "mon", verdicts) == []  # same answers: nothing new
    tasks = store.tasks("mon", "correct")
    confs = [t.payload["judge_confidence"] for t in tasks]
    assert confs == sorted(confs, reverse=True) and confs[0] == pytest.approx(max(priority(v) for v in flagged), abs=1e-4)
    # a reviewer works the queue in the order the store serves it: the most confident flag first
    store.add_annotator("rev")
    served, rng = [], random.Random(0)
    while (view := store.next_task("mon", "rev")) is not None:
        served.append(view.payload["judge_confidence"])
        assert view.payload["judge_reason"]
        s = kn.score(view.prompt, view.responses[0])
        if s.ideal:
            store.submit("rev", view.id, {"decision": "accept"})
        elif len(served) % 5 == 0:
            store.submit("rev", view.id, {"decision": "reject", "reason": "cannot fix"})
        else:
            fixed = kn.world.respond(view.prompt, kn.world.ideal_behaviour(view.prompt), rng)
            store.submit("rev", view.id, {"decision": "edit", "edited_text": fixed})
    assert served == confs
    recs = correction_records(store, "mon")
    c = recs["counts"]
    assert c["reviewed"] == len(ids) and c["corrected"] + c["accepted"] + c["rejected"] == len(ids) and c["corrected"] > 0
    for sft, pair in zip(recs["sft"], recs["pairs"]):
        assert kn.score(sft["prompt"], sft["completion"]).ideal
        assert pair["chosen"] == sft["completion"] and pair["rejected"] == sft["original"]
        assert pair["annotator_ids"] == ["rev"] and pair["log_id"].startswith("r") and pair["judge_reason"]
        assert pair["model"] == "m1" and pair["created_at"]
    store.close()


def test_cli_monitor_run_and_export(kn, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps({"id": e.id, "prompt": e.prompt, "response": e.response}) for e in _log(kn, n=12)))
    db = f"sqlite:///{tmp_path / 'm.db'}"
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["monitor", "run", "--log", str(log), "--output", str(tmp_path / "v.jsonl"), "--store", db]
        + ["--judge-plugin", "alignkit.sandbox.judge:sandbox_judge"],
    )
    assert res.exit_code == 0, res.output
    verdicts = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert len(verdicts) == 12 and f"{sum(v['flagged'] for v in verdicts)} of 12 answers flagged" in res.output
    res = runner.invoke(app, ["monitor", "export", "--store", db, "--output", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "0 corrected" in res.output and (tmp_path / "out" / "pairs.jsonl").exists()


def test_judge_over_http_matches_the_local_model(tmp_path):
    """The monitoring and RAG judges on a real OpenAI-compatible endpoint (``alignkit serve`` on loopback).

    Endpoints give option log-probs for single-token options only, so the tiny model's tokenizer is
    trained on text where "yes" and "no" are words (real LLM vocabularies have them as tokens).
    """
    from alignkit.models.tiny import build_tiny_model
    from tests.conftest import TINY_TEXTS

    model, tok = build_tiny_model([*TINY_TEXTS, "yes no yes no. Yes, no."] * 3, seed=0)
    assert all(any(tok.decode([i]).strip() == w for i in range(len(tok))) for w in ("yes", "no"))
    entries = [
        LogEntry("a", "What is the river of Varnholt?", "The river of Varnholt is the Elsa."),
        LogEntry("b", "Hi", "one two"),
    ]
    cases = [
        RagCase(
            "What is the river?", "It is the Elsa. Hope that helps.", ["The river of Varnholt is the Elsa."], "It is the Elsa."
        )
    ]
    local = LocalBackend(model, tok)
    app_ = make_app(model, tok, "tiny", limits=ServeLimits(max_top_logprobs=len(tok)))
    with BackgroundServer(app_) as srv:
        remote = OpenAIBackend(srv.url, model="tiny", top_logprobs=len(tok), cache_dir=tmp_path / "cache")
        vr = judge_entries(remote, entries, reasons=True, max_reason_tokens=4)
        rr = evaluate_rag(remote, cases)
        assert remote.http_calls > 0
    vl = judge_entries(local, entries, reasons=True, max_reason_tokens=4)
    rl = evaluate_rag(local, cases)
    for a, b in zip(vr, vl):
        assert a.probs == pytest.approx(b.probs, abs=1e-4) and a.flagged == b.flagged
    for key in ("faithfulness_soft", "answer_relevancy_soft", "context_precision_soft", "context_recall_soft"):
        assert rr[0][key] == pytest.approx(rl[0][key], abs=1e-4)


def test_monitor_reads_the_log_alignkit_serve_writes(tiny, tmp_path):
    """``alignkit serve --log-requests FILE`` rows are a monitoring log as they are."""
    model, tok = tiny
    log = tmp_path / "served.jsonl"
    with BackgroundServer(make_app(model, tok, "tiny", request_log=log)) as srv:
        OpenAIBackend(srv.url, model="tiny").chat([[{"role": "user", "content": "What is the river of Varnholt?"}]], max_tokens=4)
    [entry] = read_log(log)
    assert entry.prompt == "What is the river of Varnholt?" and entry.model == "tiny" and isinstance(entry.response, str)
    [verdict] = judge_entries(LocalBackend(model, tok), [entry], reasons=False)
    assert sum(verdict.probs) == pytest.approx(1.0)
