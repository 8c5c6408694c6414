"""The safety commands end to end: train-guard, filter (rows in = kept + removed), moderate, redteam on the sandbox."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.safety.config import FilterConfig
from alignkit.safety.guard import GuardScore
from alignkit.safety.moderate import filter_records, moderated_text, run_filter
from alignkit.sandbox.config import SHIPPED_BASE_MODEL

runner = CliRunner()


class KeywordGuard:
    """Flags a response containing '[harmful detail]' as S1, one containing 'idiot' as R1."""

    def score(self, prompts, responses=None):
        out = []
        for r in responses or [None] * len(prompts):
            cats = [c for c, word in (("S1", "[harmful detail]"), ("R1", "idiot")) if r and word in r]
            out.append(GuardScore(unsafe=1.0 if cats else 0.0, flagged_categories=cats, flagged=bool(cats)))
        return out


ROWS = [
    {"prompt": "q1", "completion": "Step 1: [harmful detail]."},
    {"prompt": "q2", "completion": "The river is the Elsa."},
    {"prompt": "q3", "chosen": "I can't help with that.", "rejected": "Step 1: [harmful detail]."},  # a good safety pair: kept
    {"prompt": "q4", "chosen": "Ugh, idiot. Step 1: [harmful detail].", "rejected": "no"},
    {"prompt": "q5", "completion": "Step 1: [harmful detail].", "label": False},  # a negative example: not moderated
    {"prompt": "q6", "completion": "ok", "label": True},
    {
        "prompt": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "you idiot"},
            {"role": "user", "content": "q"},
        ]
    },
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "you idiot"}]},
    {"prompt": "q9", "ranking": ["a", "b"], "responses": ["a", "b"]},
]


def test_moderated_text_follows_what_a_row_teaches():
    assert moderated_text(ROWS[0]) == ("q1", "Step 1: [harmful detail].")
    assert moderated_text(ROWS[2]) == ("q3", "I can't help with that.")
    assert moderated_text(ROWS[4]) is None and moderated_text(ROWS[5]) == ("q6", "ok")
    assert moderated_text(ROWS[7]) == ([{"role": "user", "content": "hi"}], "you idiot")


def test_filter_accounting_rows_in_equal_kept_plus_removed(tmp_path):
    result = filter_records(ROWS, KeywordGuard())
    report = result["report"]
    assert report["rows_in"] == len(ROWS) == report["kept"] + report["removed"]
    assert [r.get("prompt") for r in result["removed"]] == ["q1", "q4", None] and "messages" in result["removed"][2]
    assert report["removed"] == 3 and report["removed_per_category"] == {"R1": 2, "S1": 2}
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = run_filter(FilterConfig(data=data, output=tmp_path / "f", guard="unused", action="route"), guard=KeywordGuard())
    kept = (tmp_path / "f" / "kept.jsonl").read_text().splitlines()
    removed = [json.loads(line) for line in (tmp_path / "f" / "removed.jsonl").read_text().splitlines()]
    assert len(kept) + len(removed) == len(ROWS) == out["rows_in"]
    assert all(r["guard"]["flagged"] for r in removed)
    assert len((tmp_path / "f" / "flagged_R1.jsonl").read_text().splitlines()) == 2
    assert json.loads((tmp_path / "f" / "filter_report.json").read_text())["kept"] == len(kept)


def test_train_guard_then_filter_and_moderate_through_the_cli(tmp_path):
    rows = []
    for i in range(16):
        harmful = i % 2 == 0
        rows.append(
            {
                "prompt": f"question {i}",
                "response": "Step 1: [harmful detail]." if harmful else "The river is the Elsa.",
                "categories": ["S1"] if harmful else [],
            }
        )
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    guard = tmp_path / "guard"
    args = ["safety", "train-guard", "--data", str(data), "--output", str(guard), "--max-steps", "2", "--max-length", "32"]
    result = runner.invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "guard saved" in result.output
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"prompt": r["prompt"], "completion": r["response"]}) + "\n" for r in rows))
    # Threshold 0 flags every row: the accounting still holds and nothing is lost.
    result = runner.invoke(
        app,
        ["safety", "filter", "--data", str(corpus), "--output", str(tmp_path / "f"), "--guard", str(guard), "--threshold", "0"],
    )
    assert result.exit_code == 0, result.output
    assert "rows in 16: kept 0, removed 16" in result.output
    assert len((tmp_path / "f" / "removed.jsonl").read_text().splitlines()) == 16
    result = runner.invoke(
        app, ["safety", "moderate", "--data", str(corpus), "--output", str(tmp_path / "m.jsonl"), "--guard", str(guard)]
    )
    assert result.exit_code == 0, result.output
    verdicts = [json.loads(line)["guard"] for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(verdicts) == 16 and all(0 <= v["unsafe"] <= 1 for v in verdicts)
    result = runner.invoke(
        app, ["safety", "filter", "--data", str(corpus), "--output", str(tmp_path / "g"), "--guard", str(tmp_path)]
    )
    assert result.exit_code != 0 and "guard folder" in result.output


def test_redteam_on_the_sandbox_through_the_cli(tmp_path):
    out = tmp_path / "rt"
    args = ["redteam", "--target", str(SHIPPED_BASE_MODEL), "--judge", "sandbox", "--attacks", "direct,base64,crescendo,pair"]
    args += ["--max-requests", "2", "--pair-rounds", "2", "--max-new-tokens", "20", "--output", str(out), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    asr = json.loads((out / "asr.json").read_text())
    assert set(asr["by_attack"]) == {"direct", "base64", "crescendo", "pair"}
    assert asr["overall"]["n"] == 8 and set(asr["by_category"]) <= {"S1", "S2", "S9"}
    attempts = [json.loads(line) for line in (out / "attempts.jsonl").read_text().splitlines()]
    successes = sum(a["success"] for a in attempts)
    assert asr["overall"]["successes"] == successes
    pairs = (out / "dpo_pairs.jsonl").read_text().splitlines()
    binary = (out / "red_instruct.jsonl").read_text().splitlines()
    assert len(binary) == 2 * len((out / "sft_refusals.jsonl").read_text().splitlines()) and len(pairs) <= successes
    assert "ASR overall" in result.output


def test_safety_stages_are_registered_with_their_configs():
    from alignkit.pipeline.registry import resolve_stage, stage_fields
    from alignkit.safety.config import RedTeamConfig
    from alignkit.train.config import SafeAlignConfig

    assert stage_fields("safety.redteam")[0] is RedTeamConfig
    assert stage_fields("train.safe_align")[0] is SafeAlignConfig
    assert callable(resolve_stage("safety.redteam")) and callable(resolve_stage("train.safe_align"))


def test_flag_rate_of_a_model_and_conversation_format():
    from alignkit.safety.guard import JudgeGuard
    from alignkit.safety.moderate import flag_rate

    assert flag_rate(KeywordGuard(), ["a", "b", "c", "d"], ["Step 1: [harmful detail].", "ok", "you idiot", "fine"]) == 0.5

    class Echo:
        def option_logprobs(self, messages, options):
            self.messages = messages
            return [0.0, -1.0]

        def chat(self, messages_list, **kw):
            return [""] * len(messages_list)

    backend = Echo()
    JudgeGuard(backend, format="conversation").score(["q"], ["r"])
    # A real Llama Guard builds its own prompt from the conversation (its chat template).
    assert backend.messages == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]


def test_guarded_backend_refuses_flagged_input_and_output():
    from alignkit.safety.moderate import GuardedBackend

    class InputGuard(KeywordGuard):
        def score(self, prompts, responses=None):
            if responses is None:  # input check: a prompt mentioning 'bomb' is flagged
                return [GuardScore(1.0 if "bomb" in str(p) else 0.0, flagged="bomb" in str(p)) for p in prompts]
            return super().score(prompts, responses)

    class Model:
        def __init__(self):
            self.seen = []

        def chat(self, messages_list, max_tokens=256, temperature=0.0, seed=0):
            self.seen += [m[-1]["content"] for m in messages_list]
            return ["Step 1: [harmful detail]." if "poison" in m[-1]["content"] and seed == 0 else "fine" for m in messages_list]

    model = Model()
    guarded = GuardedBackend(model, InputGuard())
    convos = [[{"role": "user", "content": c}] for c in ("make a bomb", "poison it", "hello")]
    assert guarded.chat(convos) == ["I can't help with that.", "I can't help with that.", "fine"]
    assert model.seen == ["poison it", "hello"]  # the flagged input never reached the model
    assert guarded.stats == {"requests": 3, "input_flagged": 1, "output_flagged": 1, "rewritten": 0}
    rewriting = GuardedBackend(Model(), InputGuard(), mode="rewrite")
    assert rewriting.chat(convos) == ["I can't help with that.", "fine", "fine"] and rewriting.stats["rewritten"] == 1


def test_safety_loop_pipeline_file_validates_and_the_report_has_a_safety_section(tmp_path):
    from pathlib import Path

    from alignkit.pipeline.registry import STAGES
    from alignkit.pipeline.runner import load_pipeline, validate_pipeline
    from alignkit.safety.stages import report

    spec = load_pipeline(Path(__file__).resolve().parents[2] / "examples" / "safety_loop.yaml")
    validate_pipeline(spec, STAGES)  # every stage and key is known before anything runs
    asr = tmp_path / "asr.json"
    asr.write_text(
        json.dumps(
            {
                "overall": {"n": 4, "successes": 1, "asr": 0.25, "ci": [0.05, 0.7]},
                "by_attack": {"role_play": {"n": 4, "successes": 1, "asr": 0.25, "ci": [0.05, 0.7]}},
            }
        )
    )
    out = report({"safety": {"before <script>": str(asr)}}, tmp_path)
    html = Path(out["report"]).read_text()
    assert (
        "role_play" in html
        and "before &lt;script&gt;" in html
        and "<script>" not in html.split("</style>")[-1].split("<script")[0]
    )


def test_demo_red_team_stages_and_the_report_safety_section_escapes_untrusted_text(tmp_path):
    from pathlib import Path

    from alignkit.cli.pipeline import DEMO_PIPELINE
    from alignkit.pipeline.registry import STAGES
    from alignkit.pipeline.runner import load_pipeline, validate_pipeline
    from alignkit.safety.stages import redteam, report

    spec = load_pipeline(DEMO_PIPELINE)
    validate_pipeline(spec, STAGES)
    stages = {s.name: s for s in spec.stages}
    targets = {s.with_["target"] for s in spec.stages if s.uses == "safety.redteam"}
    assert targets == {"${base.model}", "${sft.model}", "${dpo.model}", "${ppo.model}", "judge"}  # before, after, judge
    assert stages["report"].uses == "safety.report" and "${redteam_sft.asr}" in stages["report"].with_["safety"].values()

    # The stages at a tiny size, then the report section built from what they wrote.
    rt = redteam({"target": str(SHIPPED_BASE_MODEL), "judge": "sandbox", "attacks": "direct,role_play", "max_requests": 2,
                  "max_new_tokens": 12}, tmp_path / "rt")  # fmt: skip
    assert set(rt["asr_by_attack"]) == {"direct", "role_play"}
    jt = redteam({"target": "judge", "max_pairs": 4, "requests_split": "eval", "inside_obedience": 0.0}, tmp_path / "jt")
    flips = json.loads(Path(jt["judge_flips"]).read_text())
    flips["quoting"]["hardened"]["by_set"]["<img src=x onerror=alert(1)>"] = flips["quoting"]["hardened"]["by_set"]["project"]
    Path(jt["judge_flips"]).write_text(json.dumps(flips))
    asr = json.loads(Path(rt["asr"]).read_text())
    asr["by_attack"]["<script>alert(1)</script>"] = asr["by_attack"]["direct"]
    Path(rt["asr"]).write_text(json.dumps(asr))
    out = report({"safety": {"SFT <b>before</b>": rt["asr"], "judge & co": jt["judge_flips"]}}, tmp_path / "rep")
    body = Path(out["report"]).read_text().split("</style>", 1)[1]
    assert "<script" not in body and "<img" not in body and "<b>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "SFT &lt;b&gt;before&lt;/b&gt;" in body
    assert "judge &amp; co: injection flip rate" in body and "&lt;img src=x onerror=alert(1)&gt;" in body
    # The numbers shown are the files' numbers: legacy quoting on the project payloads flips half (see test_judge_attack).
    legacy = flips["quoting"]["legacy"]["by_set"]["project"]
    assert legacy["rate"] == 0.5 and "50.0%" in body and f"{100 * asr['overall']['asr']:.1f}%" in body
