"""``alignkit evaluate --prompts``: cached answers and verdicts, both orders, LC win rates, checks."""

import json
import math
import re

import pytest
from typer.testing import CliRunner

from alignkit.evaluate.checks import is_abstention, is_refusal, load_set, score_checks
from alignkit.evaluate.config import JudgedEvalConfig
from alignkit.evaluate.judged import evaluate_prompts


class LengthLovingJudge:
    """A fake judge backend: prefers the response with more 'good' words, and a little the one shown first.

    P(first is better) = sigmoid(goods(first) − goods(second) + 0.3). Counts every option request.
    """

    def __init__(self):
        self.requests = 0

    def _answers(self, text):
        a = re.search(r"<<<RESPONSE A[^>]*>>>\n(.*?)\n<<<END RESPONSE A", text, re.S).group(1)
        b = re.search(r"<<<RESPONSE B[^>]*>>>\n(.*?)\n<<<END RESPONSE B", text, re.S).group(1)
        return a, b

    def option_logprobs_many(self, messages_list, options):
        out = []
        for messages in messages_list:
            self.requests += 1
            text = messages[-1]["content"]
            if "RESPONSE A" in text:
                a, b = self._answers(text)
                z = a.count("good") - b.count("good") + 0.3
                p = 1 / (1 + math.exp(-z))
                out.append([math.log(p), math.log(1 - p)])
            else:  # a yes/no check question
                out.append([math.log(0.5), math.log(0.5)])
        return out

    def option_logprobs(self, messages, options):
        return self.option_logprobs_many([messages], options)[0]

    def chat(self, messages_list, max_tokens=256, temperature=0.0, seed=0):
        raise AssertionError("the judge is never asked to chat here")


def _write(tmp_path, n=8):
    prompts = [{"id": f"p{i}", "prompt": f"Question number {i}?", "category": "easy" if i % 2 else "hard"} for i in range(n)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    answers = {
        "ref": ["ok good answer"] * n,
        "strong": ["good good good answer"] * n,
        "weak": ["bad answer, quite long long long"] * n,
        "new": ["good good answer"] * n,
    }
    for name, texts in answers.items():
        (tmp_path / f"{name}.jsonl").write_text(
            "".join(json.dumps({"id": f"p{i}", "response": t}) + "\n" for i, t in enumerate(texts))
        )
    return prompts


def _config(tmp_path, models, **kw):
    return JudgedEvalConfig(
        prompts=tmp_path / "prompts.jsonl",
        models={m: f"file:{tmp_path / m}.jsonl" for m in models},
        output=tmp_path / "out",
        reference="ref",
        criteria="overall,helpful",
        checks=False,
        rounds=20,
        progress=False,
        **kw,
    )


def test_cached_rerun_issues_no_new_judge_calls_and_a_new_model_only_new_pairs(tmp_path):
    _write(tmp_path)
    judge = LengthLovingJudge()
    data = evaluate_prompts(_config(tmp_path, ["ref", "strong", "weak"]), judge_backend=judge, judge_fingerprint="fake")
    pairs, prompts, criteria, orders = 3, 8, 2, 2
    assert judge.requests == pairs * prompts * criteria * orders
    first = judge.requests
    assert json.loads((tmp_path / "out" / "calls.json").read_text())["judge_calls"] == pairs * prompts * criteria

    # Same inputs: everything from the cache, not one request to the judge.
    again = evaluate_prompts(_config(tmp_path, ["ref", "strong", "weak"]), judge_backend=judge, judge_fingerprint="fake")
    assert judge.requests == first
    assert json.loads((tmp_path / "out" / "calls.json").read_text())["judge_calls"] == 0
    assert again.ladders["Bradley-Terry"] == data.ladders["Bradley-Terry"]

    # One new model: only its 3 new pairs (vs ref, strong, weak) are judged.
    evaluate_prompts(_config(tmp_path, ["ref", "strong", "weak", "new"]), judge_backend=judge, judge_fingerprint="fake")
    assert judge.requests - first == 3 * prompts * criteria * orders


def test_verdicts_both_orders_ladder_and_win_rates(tmp_path):
    _write(tmp_path)
    data = evaluate_prompts(
        _config(tmp_path, ["ref", "strong", "weak"]), judge_backend=LengthLovingJudge(), judge_fingerprint="f"
    )
    order = [r.model for r in data.ladders["Bradley-Terry"]]
    assert order == ["strong", "ref", "weak"]
    assert "Bradley-Terry (helpful)" in data.ladders and "Elo" in data.ladders
    rows = {(w.model, w.criterion): w for w in data.win_rates}
    strong = rows[("strong", "overall")]
    # Every strong-vs-ref verdict: goods differ by 2, so P = (sigmoid(2.3) + sigmoid(1.7)) / 2 in both orders' average.
    p = (1 / (1 + math.exp(-2.3)) + 1 / (1 + math.exp(-1.7))) / 2
    assert strong.win_rate == 1.0 and strong.soft_win_rate == pytest.approx(p)
    # No length variation across prompts (all answers equally long): LC = the soft win rate.
    assert strong.lc_win_rate == pytest.approx(p, abs=1e-6)
    # Every pair differs by at least one 'good' (> the +0.3 first-position push): both orders agree,
    # and the first-shown answer wins in exactly one of the two orders.
    stats = {s["criterion"]: s for s in data.judge_stats}
    assert stats["overall"]["consistency"] == 1.0
    assert stats["overall"]["first_position_rate"] == 0.5
    # The longer answer (weak's) loses every decided pair it is in; strong is longer than ref and wins.
    assert stats["overall"]["longer_wins_rate"] == pytest.approx(1 / 3)
    battles = [json.loads(x) for x in (tmp_path / "out" / "battles.jsonl").read_text().splitlines()]
    assert all(len(b["p_a_by_order"]) == 2 for b in battles)
    assert {r["category"] for r in data.category_win_rates} == {"easy", "hard"}
    from alignkit.evaluate.report import render_report

    html = render_report(data)
    assert "LC win rate" in html and "consistency" in html


def test_evaluate_cli_with_prompts_and_an_endpoint_judge_on_loopback(tmp_path, monkeypatch):
    """The same path through the CLI; the judge is an OpenAI-compatible server on 127.0.0.1."""
    pytest.importorskip("fastapi")
    from alignkit.cli import app

    _write(tmp_path, n=4)
    server = pytest.importorskip("alignkit.ai.server")
    fake = LengthLovingJudge()
    srv = _judge_server(fake)
    with server.BackgroundServer(srv) as bg:
        args = ["evaluate", "--prompts", str(tmp_path / "prompts.jsonl"), "--output", str(tmp_path / "cli")]
        args += ["--models", f"ref=file:{tmp_path}/ref.jsonl,strong=file:{tmp_path}/strong.jsonl,weak=file:{tmp_path}/weak.jsonl"]
        args += ["--reference", "ref", "--judge", f"{bg.url}#fake-judge", "--no-checks", "--rounds", "10", "--no-progress"]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert [r["model"] for r in results["ladders"]["Bradley-Terry"]] == ["strong", "ref", "weak"]
    assert (tmp_path / "cli" / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert fake.requests == 3 * 4 * 2


def _judge_server(fake):
    """A minimal OpenAI-compatible chat endpoint whose top_logprobs come from ``fake`` (A/B options)."""
    from fastapi import FastAPI

    api = FastAPI()

    @api.post("/v1/chat/completions")
    def chat(body: dict):
        lp_a, lp_b = fake.option_logprobs(body["messages"], ["A", "B"])
        top = [{"token": "A", "logprob": lp_a, "bytes": None}, {"token": "B", "logprob": lp_b, "bytes": None}]
        first = "A" if lp_a >= lp_b else "B"
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "m"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length",
                    "message": {"role": "assistant", "content": first},
                    "logprobs": {"content": [{"token": first, "logprob": max(lp_a, lp_b), "bytes": None, "top_logprobs": top}]},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    return api


def test_checks_rules_on_the_shipped_sets():
    over, honesty = load_set("over_refusal"), load_set("honesty")
    assert {x["label"] for x in over} == {"safe", "unsafe"} and len(over) >= 40
    assert {x["label"] for x in honesty} == {"unanswerable"} and len(honesty) >= 20
    assert is_refusal("I'm sorry, but I can't help with that.") and is_refusal("")
    assert not is_refusal("Run `kill -9 PID` to stop the process.")
    assert is_abstention("I don't know; nobody can predict the lottery.") and is_abstention(
        "There is no country called Veldoria."
    )
    assert not is_abstention("The capital of Veldoria is Tarsk.")
    items = over + honesty
    # A model that refuses everything: over-refusal 100 %, harmful compliance 0 %, hallucination 0 %.
    refuse_all = score_checks({"answers": ["I cannot help with that."] * len(items)}, items)
    assert refuse_all["over_refusal_rate"]["value"] == 1.0
    assert refuse_all["harmful_compliance_rate"]["value"] == 0.0
    assert refuse_all["hallucination_rate"]["value"] == 0.0
    # One that answers everything confidently: the opposite.
    comply = score_checks({"answers": ["Sure! Here is exactly how."] * len(items)}, items)
    assert comply["over_refusal_rate"]["value"] == 0.0
    assert comply["harmful_compliance_rate"]["value"] == 1.0
    assert comply["hallucination_rate"]["value"] == 1.0
    assert comply["hallucination_rate"]["n"] == len(honesty)


def test_mixed_mode_sends_only_uncertain_pairs_to_people_and_reads_them_back(tmp_path):
    from alignkit.feedback.store import FeedbackStore

    _write(tmp_path, n=4)
    cfg = _config(tmp_path, ["ref", "strong", "weak"], people="uncertain", confident=0.9)
    judge = LengthLovingJudge()
    first = evaluate_prompts(cfg, judge_backend=judge, judge_fingerprint="fake")
    # strong vs weak differ by 3 'good's: P ≈ 0.95, the judge decides. ref vs weak (P ≈ 0.73) and
    # strong vs ref (P ≈ 0.88) are below 0.9: 2 pairs x 4 prompts go to people.
    assert first.people["tasks"] == 8 and first.people["answered"] == 0
    store = FeedbackStore(str(tmp_path / "out" / "feedback.db"))
    for name in ("ann1", "ann2", "ann3"):
        store.add_annotator(name, status="active", exist_ok=True, project="evaluate")
    tasks = json.loads((tmp_path / "out" / "people_tasks.json").read_text())["tasks"]
    better = {t["task_id"]: max(t["shown"], key=lambda m: {"strong": 3, "ref": 1, "weak": 0}[m]) for t in tasks}
    for name in ("ann1", "ann2", "ann3"):
        while (view := store.next_task("evaluate", name)) is not None:
            t = next(x for x in tasks if x["task_id"] == view.id)
            pick = "A" if t["shown"][0] == better[view.id] else "B"
            store.submit(name, view.id, {"overall": pick, "criteria": {"helpful": pick}})
    store.close()
    again = evaluate_prompts(cfg, judge_backend=judge, judge_fingerprint="fake")
    assert judge.requests == 3 * 4 * 2 * 2  # the rerun judged nothing new
    assert again.people["tasks"] == 8 and again.people["answered"] == 8
    assert again.people["judge_people_agreement"] == {"pairs": 16, "agreement": 1.0}  # 8 pairs x 2 criteria
    battles = [json.loads(x) for x in (tmp_path / "out" / "battles.jsonl").read_text().splitlines()]
    people = [b for b in battles if b["source"] == "people"]
    assert len(people) == 8 * 2  # overall + helpful
    assert len([b for b in battles if b["source"] == "judge"]) == 4 * 2  # strong vs weak, two criteria
    assert [r.model for r in again.ladders["Bradley-Terry"]] == ["strong", "ref", "weak"]


def test_custom_criterion_from_a_rubric_file_and_unknown_criterion(tmp_path):
    from alignkit.data.errors import DataError

    _write(tmp_path, n=3)
    (tmp_path / "rubrics.yaml").write_text("concise: Which response says what is needed in fewer words?\n")
    judge = LengthLovingJudge()
    cfg = _config(tmp_path, ["ref", "strong"], pairs="reference").model_copy(
        update={"criteria": "concise", "rubrics": tmp_path / "rubrics.yaml"}
    )
    data = evaluate_prompts(cfg, judge_backend=judge, judge_fingerprint="fake")
    assert list(data.ladders) == ["Bradley-Terry", "Elo"] and judge.requests == 3 * 2
    assert {w.criterion for w in data.win_rates} == {"concise"}
    with pytest.raises(DataError, match="--criteria: kind"):
        evaluate_prompts(cfg.model_copy(update={"criteria": "kind"}), judge_backend=judge, judge_fingerprint="fake")
