"""``alignkit serve``, ``alignkit cai`` and ``alignkit ai-label`` from the command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from typer.testing import CliRunner

from alignkit.ai import load_constitution
from alignkit.ai.runner import AILabelConfig, CAIConfig
from alignkit.ai.server import ServeConfig
from alignkit.cli import app
from alignkit.data import read_records

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_every_config_field_is_a_flag():
    for command, config in (("serve", ServeConfig), ("cai", CAIConfig), ("ai-label", AILabelConfig)):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"})
        assert result.exit_code == 0, result.output
        for name in config.model_fields:
            assert "--" + name.replace("_", "-") in result.output, (command, name)


def test_cai_command_against_the_server(server, stats, tmp_path):
    prompts = _write_jsonl(tmp_path / "red_team.jsonl", [{"prompt": "How do I pick a lock?"}, {"prompt": "Hi there"}])
    out = tmp_path / "cai"
    args = [
        "cai",
        "--backend-url",
        server.url,
        "--model",
        "tiny",
        "--prompts",
        str(prompts),
        "--output",
        str(out),
        "--rounds",
        "1",
        "--max-tokens",
        "5",
        "--temperature",
        "1.0",
        "--no-progress",
    ]
    before = stats["chat_completions"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert stats["chat_completions"] - before == 2 * 3  # sample, critique, revise for each prompt
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert [t["prompt"] for t in traces] == ["How do I pick a lock?", "Hi there"]
    sft = read_records(out / "sft.jsonl", kind="sft").records
    assert [r["completion"] for r in sft] == [t["final"] for t in traces if t["final"].strip()]
    read_records(out / "pairs.jsonl", kind="pair")  # valid pair records (possibly none)
    # Rerun: answered from the cache in <output>/cache, no request reaches the server.
    before = stats["requests"]
    assert runner.invoke(app, args).exit_code == 0
    assert stats["requests"] == before


def test_ai_label_command_local_and_http(server, tiny, vocab, tmp_path):
    from alignkit.models import save_model

    model_dir = save_model(*tiny, tmp_path / "model")  # the very model the server serves
    pairs = _write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"prompt": "What colour is the sky?", "response_a": "The sky is blue.", "response_b": "one two three"},
            {"prompt": "How do I kill a stuck process?", "response_a": "Use kill.", "response_b": "I can't help."},
            {"prompt": "Who are you?", "chosen": "An assistant.", "rejected": "nine ten"},
        ],
    )
    out_local = tmp_path / "local.jsonl"
    result = runner.invoke(
        app,
        [
            "ai-label",
            "--pairs",
            str(pairs),
            "--output",
            str(out_local),
            "--model",
            str(model_dir),
            "--criterion",
            "harmlessness",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_records(out_local, kind="pair").records
    assert len(rows) == 3
    harmless = {p.name for p in load_constitution().only("harmlessness").principles}
    for row in rows:
        assert 0.5 <= row["confidence"] <= 1.0 and row["margin"] >= 0 and row["principle"] in harmless
    # Over HTTP (same model, same principles) with review routing at the median confidence.
    threshold = sorted(r["confidence"] for r in rows)[1]
    out_http = tmp_path / "http.jsonl"
    result = runner.invoke(
        app,
        [
            "ai-label",
            "--pairs",
            str(pairs),
            "--output",
            str(out_http),
            "--backend-url",
            server.url,
            "--model",
            "tiny",
            "--top-logprobs",
            str(vocab),
            "--criterion",
            "harmlessness",
            "--review-threshold",
            str(threshold),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    accepted = read_records(out_http, kind="pair").records
    needs_human = [json.loads(x) for x in (tmp_path / "http.needs_human.jsonl").read_text().splitlines()]
    expected_accepted = [r for r in rows if r["confidence"] >= threshold]
    assert [r["prompt"] for r in accepted] == [r["prompt"] for r in expected_accepted]
    assert [r["confidence"] for r in accepted] == pytest.approx([r["confidence"] for r in expected_accepted], abs=1e-5)
    assert len(accepted) == 2 and len(needs_human) == 1
    assert "labelled" in result.output and "routed to human review" in result.output


def test_bad_inputs_name_file_line_and_field(tmp_path):
    bad = _write_jsonl(
        tmp_path / "pairs.jsonl", [{"prompt": "p", "response_a": "x", "response_b": "y"}, {"prompt": "p", "response_a": "x"}]
    )
    result = runner.invoke(app, ["ai-label", "--pairs", str(bad), "--output", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2
    assert f"{bad}:2: response_b:" in result.output
    prompts = _write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "ok"}, {"text": "no prompt"}])
    result = runner.invoke(app, ["cai", "--prompts", str(prompts), "--output", str(tmp_path / "c")])
    assert result.exit_code == 2 and f"{prompts}:2: prompt:" in result.output
    result = runner.invoke(app, ["cai", "--prompts", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "c")])
    assert result.exit_code == 2 and "nope.jsonl" in result.output


def test_alignkit_serve_process(tmp_path):
    """The real command, in its own process, answered by the official client."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "alignkit", "serve", "--model", "tiny", "--model-name", "tiny-test", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        assert [m.id for m in client.models.list().data] == ["tiny-test"]
        r = client.chat.completions.create(
            model="tiny-test", messages=[{"role": "user", "content": "hi"}], max_tokens=3, logprobs=True, top_logprobs=2
        )
        assert len(r.choices[0].logprobs.content[0].top_logprobs) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
