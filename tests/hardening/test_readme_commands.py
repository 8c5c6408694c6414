"""The README's commands work as written (issue #21: "the README's `alignkit run my.yaml` needs `--pipeline`").

Every ``alignkit …`` command in the README (fenced ``bash`` blocks and inline code) is checked:

* all of them parse: the command exists and every flag it names is a real flag (the command line
  is run with ``--help`` inserted after the command words, which click acts on only after parsing
  every option, so nothing runs);
* the ones that need nothing but local files run verbatim, in a scratch folder, in README order
  (the feedback store walk-through, building and scoring the sandbox world).

Placeholders the README uses (``M``, ``…``, ``a|b`` alternatives, ``[--optional]`` parts) are
reduced to a parseable line for the first check only.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignkit.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def _bash_commands(text: str) -> list[str]:
    """``alignkit …`` lines of the fenced bash blocks, continuation lines joined, comments dropped."""
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith("alignkit "):
                out.append(line)
    return out


def _inline_commands(text: str) -> list[str]:
    """``alignkit …`` inline code spans outside fenced blocks (the command table and the prose)."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = re.findall(r"`(alignkit [^`]+)`", prose)
    out = []
    for span in spans:
        for part in span.split(" / "):  # "a / b" lists two commands in one cell
            out.append(part.strip())
    return out


def _parseable(command: str) -> list[str]:
    """A README command reduced to arguments click can parse: placeholders kept, alternatives cut to the first."""
    command = command.replace("\\|", "|").replace("…", "...")
    command = re.sub(r"\[([^\]]*)\]", r"\1", command)  # [--world world/] -> --world world/
    words: list[str] = []
    for word in shlex.split(command)[1:]:
        if word == "...":  # "--db ..." is a value left to the reader; a bare "..." stands for more flags
            if words and words[-1].startswith("--"):
                words.append("X")
            continue
        if "|" in word and not word.startswith("http"):
            word = word.split("|")[0]
        words.append(word)
    if "<command>" in words:
        return []
    return words


COMMANDS = sorted(set(_bash_commands(README.read_text())) | set(_inline_commands(README.read_text())))


def test_readme_has_commands():
    assert len(COMMANDS) >= 20, COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_parses(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    args = _parseable(command)
    if not args:
        pytest.skip("a placeholder, not a command")
    monkeypatch.chdir(tmp_path)  # nothing may run, but if it did, it would write here
    # --help right after the command words: it can never be taken as the value of a README flag,
    # and click acts on it only once every other flag has parsed.
    at = next((i for i, w in enumerate(args) if w.startswith("-")), len(args))
    result = CliRunner().invoke(app, [*args[:at], "--help", *args[at:]])
    assert result.exit_code == 0, (command, result.output)


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
    return result.output


def test_feedback_walkthrough_runs_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The README's feedback block, line by line, except the lines with '...' placeholders and `simulate` (minutes)."""
    monkeypatch.chdir(tmp_path)
    rows = [{"prompt": f"question {i}?", "chosen": f"a good answer {i}", "rejected": f"a bad answer {i}"} for i in range(40)]
    Path("pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    block = [c for c in _bash_commands(README.read_text()) if c.startswith("alignkit feedback ")]
    runnable = [c for c in block if "..." not in c and " simulate " not in c + " "]
    assert any(" import " in c for c in runnable) and any(" export " in c for c in runnable)
    for command in runnable:
        _run(shlex.split(command)[1:])
    assert Path("feedback.db").exists()


def test_sandbox_build_and_score_run_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    build = next(c for c in _inline_commands(README.read_text()) if c == "alignkit sandbox build --output world/")
    _run(shlex.split(build)[1:])
    prompts = [json.loads(line) for line in Path("world/prompts_eval.jsonl").read_text().splitlines()[:20]]
    Path("responses.jsonl").write_text(
        "".join(json.dumps({"prompt": p["prompt"], "response": "I don't know."}) + "\n" for p in prompts)
    )
    score = next(c for c in _inline_commands(README.read_text()) if c.startswith("alignkit sandbox score --data responses.jsonl"))
    _run(_parseable(score))  # the README marks --world as optional with [...]; run it with the world
    assert len(Path("scored.jsonl").read_text().splitlines()) == 20
