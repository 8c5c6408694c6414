"""The bad-input suite (issue #21): every case runs a real CLI command on one malformed input.

Each row of :data:`CASES` writes some files into a fresh folder, runs ``alignkit …`` in-process
and checks four things:

* the exit code is 2 (bad input), never 0 and never an uncaught exception;
* the output has no traceback and its first error line starts ``error: ``;
* the message names the file (and line) and the field, as the case expects;
* no file that existed before the command was changed or removed (every byte hashed; an SQLite
  database by its logical content, so a refused import or submit must leave its rows as they were).

Almost every case fails before training starts, so the whole table runs in well under a minute.
``{d}`` in a case is its folder, ``{m}`` a copy of a saved tiny model inside it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import alignkit.data.io as data_io
from alignkit.cli import app

BOM = b"\xef\xbb\xbf"
SFT = b'{"prompt": "hi", "completion": "there"}\n'
PAIR = b'{"prompt": "hi", "chosen": "good answer", "rejected": "bad answer"}\n'
BINARY = b'{"prompt": "hi", "completion": "ok", "label": true}\n'
PROMPT = b'{"prompt": "hi"}\n'
MODEL = object()  # files value: a copy of the saved tiny model
EMPTY_DIR = object()  # files value: an empty folder

TRAIN = ["--max-steps", "1", "--batch-size", "2", "--no-progress"]


@dataclass
class Case:
    id: str
    argv: list[str]
    files: dict[str, object] = field(default_factory=dict)
    expect: list[str] = field(default_factory=list)  # substrings of the output ({d} is the case folder)
    setup: list[list[str]] = field(default_factory=list)  # commands run before the snapshot (must succeed)
    code: int = 2
    max_record_bytes: int | None = None
    prepare: Callable[[Path], None] | None = None  # custom file setup
    pending: Callable[[], str | None] | None = None  # a reason to skip while another helper's part is not in yet


def _evaluate_checks_reference() -> str | None:
    from pydantic import ValidationError

    from alignkit.sandbox.config import SandboxEvalConfig

    try:
        SandboxEvalConfig(models={"base": "b"}, reference="zzz", output=Path("o"))
    except ValidationError:
        return None
    return "SandboxEvalConfig does not yet check --reference against --models (requested from the evaluation helper)"


def _parquet(rows: list[dict]) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        pq.write_table(pa.Table.from_pylist(rows), folder / "data.parquet")

    return write


def _not_a_dataset(folder: Path) -> None:
    (folder / "data").mkdir()
    (folder / "data" / "notes.txt").write_text("not a dataset")


# --------------------------------------------------------------------------- data files, per trainer


# (name, content, expected substrings after the file path) for line-oriented data of any kind.
def _generic_bad(ok: bytes) -> list[tuple[str, bytes, list[str]]]:
    return [
        ("invalid_utf8", ok + b'{"prompt": "caf\xe9"}\n', [":2:", "UTF-8", "0xe9"]),
        ("truncated_json", ok + b'{"prompt": "a", "compl', [":2:", "one JSON object per line"]),
        ("empty_file", b"", [":"]),
        ("only_blank_lines", b"\n  \n\r\n", [":"]),
        ("json_array", b'[{"prompt": "a"}]\n', [":1:", "a JSON object", "a list"]),
        ("pretty_printed_json", b'{\n  "prompt": "a"\n}\n', [":1:", "JSON Lines"]),
        ("scalar_line", ok + b"42\n", [":2:", "a JSON object", "a number"]),
        ("bom_then_bad_line", BOM + ok + b"nope\n", [":2:", "JSON"]),
        ("crlf_then_bad_line", ok.replace(b"\n", b"\r\n") + b"{bad\r\n", [":2:", "JSON"]),
    ]


def _data_cases(command: str, ok: bytes, typed: list[tuple[str, bytes, list[str]]], extra: list[str]) -> list[Case]:
    cases = []
    for name, content, expect in [*_generic_bad(ok), *typed]:
        cases.append(
            Case(
                f"{command}-{name}",
                [command, "--data", "{d}/data.jsonl", "--output", "{d}/out", *extra],
                {"data.jsonl": content},
                ["{d}/data.jsonl" + expect[0], *expect[1:]],
            )
        )
    cases += [
        Case(
            f"{command}-huge_line",
            [command, "--data", "{d}/data.jsonl", "--output", "{d}/out", *extra],
            {"data.jsonl": ok + b'{"prompt": "' + b"x" * 5000 + b'"}\n'},
            ["{d}/data.jsonl:2:", "at most 4096 bytes", "ALIGNKIT_MAX_RECORD_BYTES"],
            max_record_bytes=4096,
        ),
        Case(
            f"{command}-not_parquet",
            [command, "--data", "{d}/data.parquet", "--output", "{d}/out", *extra],
            {"data.parquet": b"PAR1 this is not parquet at all"},
            ["{d}/data.parquet", "a Parquet file"],
        ),
        Case(
            f"{command}-not_a_dataset_folder",
            [command, "--data", "{d}/data", "--output", "{d}/out", *extra],
            prepare=_not_a_dataset,
            expect=["{d}/data", "save_to_disk", "notes.txt"],
        ),
        Case(
            f"{command}-unknown_suffix",
            [command, "--data", "{d}/data.csv", "--output", "{d}/out", *extra],
            {"data.csv": b"prompt,completion\nhi,there\n"},
            ["{d}/data.csv", ".csv"],
        ),
        Case(
            f"{command}-missing_file",
            [command, "--data", "{d}/nope.jsonl", "--output", "{d}/out", *extra],
            expect=["{d}/nope.jsonl", "no such file"],
        ),
    ]
    return cases


SFT_TYPED = [
    ("completion_number", SFT + b'{"prompt": "a", "completion": 12345}\n', [":2:", "completion", "a number (12345)"]),
    ("completion_object", SFT + b'{"prompt": "a", "completion": {"text": "x"}}\n', [":2:", "completion", "an object"]),
    ("messages_bad_role", b'{"messages": [{"role": "wizard", "content": "x"}]}\n', [":1:", "messages.0.role"]),
    ("messages_content_number", b'{"messages": [{"role": "user", "content": 5}]}\n', [":1:", "messages.0.content"]),
    ("no_assistant_turn", b'{"messages": [{"role": "user", "content": "hi"}]}\n', [":1:", "assistant"]),
    ("empty_completion", b'{"prompt": "a", "completion": "  "}\n', [":1:", "completion", "empty"]),
]
PAIR_TYPED = [
    ("chosen_number", PAIR + b'{"prompt": "a", "chosen": 12345, "rejected": "b"}\n', [":2:", "chosen", "a number (12345)"]),
    ("chosen_object", PAIR + b'{"prompt": "a", "chosen": {"t": 1}, "rejected": "b"}\n', [":2:", "chosen", "an object"]),
    ("rejected_null", PAIR + b'{"prompt": "a", "chosen": "x", "rejected": null}\n', [":2:", "rejected"]),
    ("identical_sides", b'{"prompt": "a", "chosen": "same", "rejected": "same"}\n', [":1:", "identical"]),
]
BINARY_TYPED = [
    ("label_string", BINARY + b'{"prompt": "a", "completion": "b", "label": "yes"}\n', [":2:", "label", "a string ('yes')"]),
    ("label_number", BINARY + b'{"prompt": "a", "completion": "b", "label": 1}\n', [":2:", "label", "a number (1)"]),
]
PROMPT_TYPED = [
    ("prompt_number", PROMPT + b'{"prompt": 7}\n', [":2:", "prompt"]),
    ("no_prompt_field", PROMPT + b'{"question": "hi"}\n', [":2:", "prompt"]),
]

CASES: list[Case] = [
    *_data_cases("sft", SFT, SFT_TYPED, TRAIN),
    *_data_cases("dpo", PAIR, PAIR_TYPED, [*TRAIN, "--on-bad-record", "raise"]),
    *[c for c in _data_cases("kto", BINARY, BINARY_TYPED, TRAIN) if "label" in c.id or c.id.endswith(("utf8", "empty_file"))],
    *[c for c in _data_cases("rm", PAIR, PAIR_TYPED, TRAIN) if c.id.endswith(("chosen_number", "invalid_utf8", "not_parquet"))],
    *[
        c
        for c in _data_cases("ppo", PROMPT, PROMPT_TYPED, [*TRAIN[:2], "--reward", "sandbox", "--no-progress"])
        if c.id.endswith(("prompt_number", "no_prompt_field", "invalid_utf8", "empty_file", "truncated_json", "huge_line"))
    ],
    # dpo's default skips bad rows, but a file with no good row is still an error naming the first bad one.
    Case(
        "dpo-skip_mode_nothing_left",
        ["dpo", "--data", "{d}/data.jsonl", "--output", "{d}/out", *TRAIN],
        {"data.jsonl": b'{"prompt": "a", "chosen": 1, "rejected": "b"}\n'},
        ["{d}/data.jsonl", "chosen"],
    ),
    Case(
        "sft-parquet_wrong_type",
        ["sft", "--data", "{d}/data.parquet", "--output", "{d}/out", *TRAIN],
        prepare=_parquet([{"prompt": "a", "completion": 5}]),
        expect=["{d}/data.parquet:1:", "completion"],
    ),
    Case(
        "dpo-parquet_missing_column",
        ["dpo", "--data", "{d}/data.parquet", "--output", "{d}/out", *TRAIN, "--on-bad-record", "raise"],
        prepare=_parquet([{"prompt": "a", "chosen": "x", "rejected": None}]),
        expect=["{d}/data.parquet:1:", "rejected"],
    ),
    Case(
        "sft-bad_eval_data",
        ["sft", "--data", "{d}/data.jsonl", "--eval-data", "{d}/eval.jsonl", "--output", "{d}/out", *TRAIN],
        {"data.jsonl": SFT, "eval.jsonl": SFT + b'{"prompt": "a"}\n'},
        ["{d}/eval.jsonl:2:", "completion"],
    ),
    # Every example longer than --max-length (9 is its minimum): counted, then an error naming the data and the flag.
    Case(
        "sft-every_prompt_longer_than_max_length",
        ["sft", "--data", "{d}/data.jsonl", "--output", "{d}/out", "--max-length", "9", *TRAIN],
        {"data.jsonl": (b'{"prompt": "' + b"word " * 60 + b'", "completion": "ok"}\n') * 3},
        ["{d}/data.jsonl: max_length:", "--max-length 9"],
    ),
    Case(
        "dpo-every_prompt_longer_than_max_length",
        ["dpo", "--data", "{d}/data.jsonl", "--output", "{d}/out", "--max-length", "9", *TRAIN],
        {"data.jsonl": (b'{"prompt": "' + b"word " * 60 + b'", "chosen": "yes", "rejected": "no"}\n') * 3},
        ["{d}/data.jsonl: max_length:", "--max-length 9"],
    ),
    # ------------------------------------------------------------------ flags and config files
    *[
        Case(
            f"flag-{cmd}-{flag.strip('-')}-{value}",
            [cmd, "--data", "{d}/d.jsonl", "--output", "{d}/out", flag, value],
            {"d.jsonl": data},
            [flag, expect],
        )
        for cmd, data, flag, value, expect in [
            ("sft", SFT, "--lr", "0", "greater than 0"),
            ("sft", SFT, "--lr", "-1", "greater than 0"),
            ("sft", SFT, "--batch-size", "0", "greater than 0"),
            ("sft", SFT, "--max-length", "8", "greater than 8"),
            ("sft", SFT, "--max-steps", "0", "greater than 0"),
            ("sft", SFT, "--eval-fraction", "1.5", "less than 1"),
            ("sft", SFT, "--grad-accum", "0", "greater than 0"),
            ("dpo", PAIR, "--beta", "0", "greater than 0"),
            ("dpo", PAIR, "--label-smoothing", "0.5", "less than 0.5"),
            ("kto", BINARY, "--desirable-weight", "-1", "greater than 0"),
            ("rm", PAIR, "--criterion-weights", "helpful", "name=weight"),
            ("ppo", PROMPT, "--temperature", "0", "greater than 0"),
            ("ppo", PROMPT, "--top-p", "1.5", "less than or equal to 1"),
            ("rloo", PROMPT, "--k", "1", "greater than or equal to 2"),
            ("grpo", PROMPT, "--rollout-batch-size", "0", "greater than 0"),
        ]
    ],
    Case(
        "flag-not_a_number",
        ["sft", "--data", "{d}/d.jsonl", "--output", "{d}/out", "--lr", "fast"],
        {"d.jsonl": SFT},
        ["--lr", "number"],
    ),
    Case(
        "flag-not_a_choice",
        ["sft", "--data", "{d}/d.jsonl", "--output", "{d}/out", "--mixed-precision", "fp8"],
        {"d.jsonl": SFT},
        ["--mixed-precision", "fp8"],
    ),
    Case("flag-missing_required", ["sft", "--data", "{d}/d.jsonl"], {"d.jsonl": SFT}, ["--output", "required"]),
    Case(
        "config-unknown_key",
        ["sft", "--config", "{d}/c.yaml"],
        {"c.yaml": b"data: d.jsonl\noutput: out\nmax_stepz: 3\n"},
        ["{d}/c.yaml:3:", "max_stepz", "did you mean 'max_steps'"],
    ),
    Case(
        "config-wrong_type",
        ["sft", "--config", "{d}/c.yaml", "--data", "{d}/d.jsonl", "--output", "{d}/out"],
        {"c.yaml": b"batch_size: 4\nlr: fast\n", "d.jsonl": SFT},
        ["{d}/c.yaml:2:", "lr", "fast"],
    ),
    Case(
        "config-negative_lr_with_line",
        ["dpo", "--config", "{d}/c.yaml"],
        {"c.yaml": b"data: d.jsonl\noutput: out\n\nlr: -0.1\n"},
        ["{d}/c.yaml:4:", "lr", "greater than 0"],
    ),
    Case(
        "config-not_a_mapping",
        ["sft", "--config", "{d}/c.yaml"],
        {"c.yaml": b"- lr\n- 3\n"},
        ["{d}/c.yaml", "a mapping", "a list"],
    ),
    Case(
        "config-bad_yaml",
        ["sft", "--config", "{d}/c.yaml"],
        {"c.yaml": b"lr: [1, 2\nmax_steps: 3\n"},
        ["{d}/c.yaml:", "valid YAML"],
    ),
    Case("config-missing_file", ["sft", "--config", "{d}/nope.yaml"], {}, ["{d}/nope.yaml", "--config"]),
    Case("config-not_utf8", ["sft", "--config", "{d}/c.yaml"], {"c.yaml": b"lr: 0.1 # caf\xe9\n"}, ["{d}/c.yaml", "UTF-8"]),
    Case(
        "config-bom_and_crlf_then_bad_value",
        ["sft", "--config", "{d}/c.yaml"],
        {"c.yaml": BOM + b"data: d.jsonl\r\noutput: out\r\nwarmup_steps: -2\r\n"},
        ["{d}/c.yaml:3:", "warmup_steps", "greater than or equal to 0"],
    ),
    # ------------------------------------------------------------------ outputs never clobber
    Case(
        "output-folder_with_other_files",
        ["sft", "--data", "{d}/d.jsonl", "--output", "{d}/out", *TRAIN],
        {"d.jsonl": SFT, "out/notes.txt": b"mine", "out/sub/keep.bin": b"\x00\x01"},
        ["{d}/out: output:", "notes.txt", "--overwrite"],
    ),
    Case(
        "output-another_runs_folder",
        ["sft", "--data", "{d}/d.jsonl", "--output", "{d}/out", *TRAIN],
        {
            "d.jsonl": SFT,
            "out/alignkit_fingerprint.json": json.dumps({"config": {"lr": 0.5, "max_steps": 1}, "inputs": {}}).encode(),
            "out/checkpoints/step-0000001/trainer_state.json": b'{"step": 1}',
        },
        ["{d}/out: output:", "different settings", "lr (0.5 -> 0.0001)"],
    ),
    Case(
        "output-old_run_without_fingerprint",
        ["sft", "--data", "{d}/d.jsonl", "--output", "{d}/out", *TRAIN],
        {"d.jsonl": SFT, "out/checkpoints/step-0000002/trainer_state.json": b'{"step": 2}', "out/metrics.jsonl": b"{}\n"},
        ["{d}/out: output:", "checkpoints", "--overwrite"],
    ),
    Case(
        "output-is_a_file",
        ["sft", "--data", "{d}/d.jsonl", "--output", "{d}/out.txt", *TRAIN],
        {"d.jsonl": SFT, "out.txt": b"precious"},
        ["{d}/out.txt: output:", "an existing file"],
    ),
    Case(
        "output-equals_data",
        ["sft", "--data", "{d}/d.jsonl", "--output", "{d}/d.jsonl", *TRAIN],
        {"d.jsonl": SFT},
        ["{d}/d.jsonl: output:", "the input --data"],
    ),
    Case(
        "output-holds_the_data_even_with_overwrite",
        ["sft", "--data", "{d}/out/d.jsonl", "--output", "{d}/out", "--overwrite", *TRAIN],
        {"out/d.jsonl": SFT},
        ["{d}/out: output:", "does not hold the input --data"],
    ),
    Case(
        "output-equals_model",
        ["dpo", "--data", "{d}/d.jsonl", "--model", "{m}", "--output", "{m}", *TRAIN],
        {"d.jsonl": PAIR, "model": MODEL},
        ["{d}/model: output:", "the input --model"],
    ),
    Case(
        "output-ppo_other_files",
        ["ppo", "--data", "{d}/p.jsonl", "--output", "{d}/out", "--reward", "sandbox", "--max-steps", "1"],
        {"p.jsonl": PROMPT, "out/readme.md": b"# mine"},
        ["{d}/out: output:", "readme.md"],
    ),
    Case(
        "output-score_onto_its_input",
        ["sandbox", "score", "--data", "{d}/r.jsonl", "--output", "{d}/r.jsonl"],
        {"r.jsonl": b'{"prompt": "Hi?", "response": "Hello."}\n'},
        ["{d}/r.jsonl: output:", "the input --data"],
    ),
    Case(
        "output-score_onto_a_folder",
        ["sandbox", "score", "--data", "{d}/r.jsonl", "--output", "{d}/o.jsonl"],
        {"r.jsonl": b'{"prompt": "Hi?", "response": "Hello."}\n', "o.jsonl/keep.txt": b"x"},
        ["{d}/o.jsonl: output:", "an existing folder"],
    ),
    Case(
        "output-ai_label_onto_its_input",
        ["ai-label", "--pairs", "{d}/p.jsonl", "--output", "{d}/p.jsonl"],
        {"p.jsonl": b'{"prompt": "a", "response_a": "x", "response_b": "y"}\n'},
        ["{d}/p.jsonl: output:", "the input --pairs"],
    ),
    # ------------------------------------------------------------------ models
    Case(
        "model-missing_folder",
        ["sft", "--data", "{d}/d.jsonl", "--model", "{d}/nomodel", "--output", "{d}/out", *TRAIN],
        {"d.jsonl": SFT},
        ["{d}/nomodel", "--allow-download"],
    ),
    Case(
        "model-empty_folder",
        ["sft", "--data", "{d}/d.jsonl", "--model", "{d}/m", "--output", "{d}/out", *TRAIN],
        {"d.jsonl": SFT, "m": EMPTY_DIR},
        ["{d}/m: model:", "an empty folder"],
    ),
    Case(
        "model-truncated_safetensors",
        ["sft", "--data", "{d}/d.jsonl", "--model", "{m}", "--output", "{d}/out", *TRAIN],
        {"d.jsonl": SFT, "model": MODEL},
        ["{d}/model/model.safetensors: model:", "truncated"],
        prepare=lambda d: _truncate(d / "model" / "model.safetensors"),
    ),
    Case(
        "model-garbage_safetensors",
        ["dpo", "--data", "{d}/d.jsonl", "--model", "{m}", "--output", "{d}/out", *TRAIN],
        {"d.jsonl": PAIR, "model": MODEL, "model/model.safetensors": b"\xff" * 64},
        ["{d}/model/model.safetensors: model:", "header"],
    ),
    Case(
        "model-config_not_json",
        ["kto", "--data", "{d}/d.jsonl", "--model", "{m}", "--output", "{d}/out", *TRAIN],
        {"d.jsonl": BINARY, "model": MODEL, "model/config.json": b"{not json"},
        ["{d}/model/config.json:1: model:", "valid JSON"],
    ),
    Case(
        "model-ppo_missing_policy",
        ["ppo", "--data", "{d}/p.jsonl", "--model", "{d}/nomodel", "--output", "{d}/out", "--reward", "sandbox"],
        {"p.jsonl": PROMPT},
        ["{d}/nomodel"],
    ),
    Case(
        "reward-garbage_spec",
        ["ppo", "--data", "{d}/p.jsonl", "--output", "{d}/out", "--reward", "bogus!!", "--max-steps", "1", "--no-progress"],
        {"p.jsonl": PROMPT},
        ["bogus!!"],
    ),
    Case(
        "reward-python_target_missing",
        ["rloo", "--data", "{d}/p.jsonl", "--output", "{d}/out", "--reward", "python:no_such_mod:fn", "--max-steps", "1"],
        {"p.jsonl": PROMPT},
        ["python:no_such_mod:fn", "no_such_mod"],
    ),
    Case(
        "reward-rm_folder_missing",
        ["grpo", "--data", "{d}/p.jsonl", "--output", "{d}/out", "--reward", "rm:{d}/norm", "--max-steps", "1"],
        {"p.jsonl": PROMPT},
        ["{d}/norm"],
    ),
    Case(
        "evaluate-reference_names_no_model",
        ["evaluate", "--models", "base={m}", "--reference", "zzz", "--output", "{d}/ev", "--n-prompts", "2"],
        {"model": MODEL},
        ["zzz", "base"],
        pending=_evaluate_checks_reference,
    ),
    Case("evaluate-models_not_pairs", ["evaluate", "--models", "justaname", "--output", "{d}/ev"], {}, ["--models", "name=path"]),
    Case(
        "evaluate-model_folder_missing",
        [
            "evaluate",
            "--models",
            "a={d}/nomodel",
            "--output",
            "{d}/ev",
            "--n-prompts",
            "2",
            "--reference",
            "a",
            "--tax-reference",
            "a",
        ],
        {},
        ["{d}/nomodel"],
    ),
    # ------------------------------------------------------------------ sandbox score
    Case(
        "score-missing_response",
        ["sandbox", "score", "--data", "{d}/r.jsonl", "--output", "{d}/o.jsonl"],
        {"r.jsonl": b'{"prompt": "Hi?", "response": "x"}\n{"prompt": "Hi?"}\n'},
        ["{d}/r.jsonl:2: response:"],
    ),
    Case(
        "score-prompt_number",
        ["sandbox", "score", "--data", "{d}/r.jsonl", "--output", "{d}/o.jsonl"],
        {"r.jsonl": b'{"prompt": 3, "response": "x"}\n'},
        ["{d}/r.jsonl:1: prompt:"],
    ),
    Case(
        "score-empty_file",
        ["sandbox", "score", "--data", "{d}/r.jsonl", "--output", "{d}/o.jsonl"],
        {"r.jsonl": b"\n"},
        ["{d}/r.jsonl", "empty file"],
    ),
    Case(
        "score-world_not_a_build",
        ["sandbox", "score", "--data", "{d}/r.jsonl", "--output", "{d}/o.jsonl", "--world", "{d}/w"],
        {"r.jsonl": b'{"prompt": "Hi?", "response": "x"}\n', "w": EMPTY_DIR},
        ["{d}/w/world.json"],
    ),
    # ------------------------------------------------------------------ feedback store
    Case(
        "feedback-db_not_sqlite",
        ["feedback", "init", "--db", "{d}/junk.db", "--project", "p"],
        {"junk.db": b"this is a text file, not a database\n" * 50},
        ["SQLite"],
    ),
    Case(
        "feedback-export_onto_a_folder",
        ["feedback", "export", "--db", "{d}/fb.db", "--project", "p", "--output", "{d}/outdir.jsonl"],
        {"outdir.jsonl/keep.txt": b"x"},
        ["{d}/outdir.jsonl"],
        setup=[["feedback", "init", "--db", "{d}/fb.db", "--project", "p"]],
    ),
    Case(
        "feedback-export_onto_the_db",
        ["feedback", "export", "--db", "{d}/fb.db", "--project", "p", "--output", "{d}/fb.db"],
        {},
        ["{d}/fb.db: output:", "the input --db"],
        setup=[["feedback", "init", "--db", "{d}/fb.db", "--project", "p"]],
    ),
    Case(
        "feedback-import_missing_file",
        ["feedback", "import", "--db", "{d}/fb.db", "--project", "p", "--input", "{d}/none.jsonl"],
        {},
        ["{d}/none.jsonl"],
        setup=[["feedback", "init", "--db", "{d}/fb.db", "--project", "p"]],
    ),
    *[
        Case(
            f"feedback-import_{name}",
            ["feedback", "import", "--db", "{d}/fb.db", "--project", "p", "--input", "{d}/in.jsonl", "--stage", "compare"],
            {"in.jsonl": content},
            ["{d}/in.jsonl" + expect[0], *expect[1:]],
            setup=[["feedback", "init", "--db", "{d}/fb.db", "--project", "p"]],
        )
        for name, content, expect in [
            ("invalid_utf8", PAIR + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n', [":2:", "UTF-8"]),
            ("empty_file", b"", [":", "empty"]),
            ("chosen_number", b'{"prompt": "a", "chosen": 12345, "rejected": "b"}\n', [":1:", "chosen"]),
            ("chosen_object", b'{"prompt": "a", "chosen": {"x": 1}, "rejected": "b"}\n', [":1:", "chosen"]),
            ("bom_then_bad_line", BOM + PAIR + b"{oops\n", [":2:", "JSON"]),
            ("truncated_json", PAIR + b'{"prompt": "a", "cho', [":2:", "JSON"]),
        ]
    ],
    Case(
        "feedback-submit_bad_row_stores_nothing",
        ["feedback", "submit", "--db", "{d}/fb.db", "--input", "{d}/answers.jsonl"],
        {"answers.jsonl": b'{"annotator": "x", "task_id": 1, "answer": {}}\n{"annotator": "x", "task_id": "one"}\n'},
        ["{d}/answers.jsonl:"],
        setup=[["feedback", "init", "--db", "{d}/fb.db", "--project", "p"]],
    ),
    # ------------------------------------------------------------------ pipelines
    *[
        Case(f"pipeline-{name}", ["run", "{d}/p.yaml"], {"p.yaml": text.encode()}, ["{d}/p.yaml" + expect[0], *expect[1:]])
        for name, text, expect in [
            (
                "unknown_stage_key",
                "stages:\n  - name: w\n    uses: sandbox.build\n    with: {seed: 0, n_townz: 3}\n",
                [":4:", "w.n_townz", "did you mean 'n_towns'"],
            ),
            (
                "unknown_simulate_key",
                "stages:\n  - name: f\n    uses: feedback.simulate\n    with:\n      n_items: 5\n      spamer_fraction: 0.1\n",
                [":6:", "f.spamer_fraction"],
            ),
            (
                "wrong_value_type",
                "stages:\n  - name: s\n    uses: train.sft\n    with: {data: x.jsonl, max_steps: lots}\n",
                [":4:", "s.max_steps", "lots"],
            ),
            (
                "non_positive_lr",
                "stages:\n  - name: s\n    uses: train.dpo\n    with:\n      lr: 0\n",
                [":5:", "s.lr", "greater than 0"],
            ),
            (
                "reference_to_itself",
                "stages:\n  - name: s\n    uses: train.sft\n    with: {data: '${s.model}'}\n",
                [":4:", "s.data", "a cycle"],
            ),
            (
                "reference_to_a_later_stage",
                "stages:\n  - name: a\n    uses: train.sft\n    with: {data: '${b.model}'}\n  - name: b\n    uses: train.sft\n"
                "    with: {data: x.jsonl}\n",
                [":4:", "a.data", "runs later"],
            ),
            (
                "reference_to_a_missing_stage",
                "stages:\n  - name: a\n    uses: train.sft\n    with: {data: '${world.sft}'}\n",
                [":4:", "a.data", "not in this pipeline"],
            ),
            ("unknown_uses", "stages:\n  - name: a\n    uses: train.sfft\n", [":3:", "unknown 'uses: train.sfft'"]),
            (
                "bad_python_target",
                "stages:\n  - name: a\n    uses: python:just_a_module\n",
                [":3:", "python:package.module:function"],
            ),
            ("duplicate_names", "stages:\n  - {name: a, uses: report}\n  - {name: a, uses: report}\n", [":3:", "unique"]),
            ("yaml_syntax", "stages:\n  - name: a\n    uses: [report\n", [":", "valid YAML"]),
            ("not_a_mapping", "- a\n- b\n", [":", "a mapping with 'stages:'"]),
            ("missing_stages", "workdir: runs/x\n", [":", "stages", "required"]),
            ("unknown_top_level_key", "stages: []\nworkdri: runs/x\n", [":2:", "workdri"]),
            ("bad_stage_name", "stages:\n  - name: 'a b'\n    uses: report\n", [":2:", "stages.0.name"]),
        ]
    ],
    Case("pipeline-missing_file", ["run", "{d}/nope.yaml"], {}, ["{d}/nope.yaml", "pipeline"]),
    Case(
        "pipeline-set_unknown_stage",
        ["run", "{d}/p.yaml", "--set", "zzz.lr=1"],
        {"p.yaml": b"stages:\n  - {name: a, uses: report, with: {results: r.json}}\n"},
        ["zzz", "not in the pipeline"],
    ),
    Case(
        "pipeline-set_bad_syntax",
        ["run", "{d}/p.yaml", "--set", "lr"],
        {"p.yaml": b"stages:\n  - {name: a, uses: report, with: {results: r.json}}\n"},
        ["stage.field=value"],
    ),
]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _digest(path: Path) -> str:
    """A file's sha256; an SQLite database's by its logical content (its -wal/-shm side files are SQLite's own)."""
    if path.suffix == ".db" and path.read_bytes()[:16] == b"SQLite format 3\x00":
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(root: Path) -> dict[str, str]:
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(("-shm", "-wal"))]
    return {str(p.relative_to(root)): _digest(p) for p in files}


def _fill(text: str, folder: Path) -> str:
    return text.replace("{d}", str(folder)).replace("{m}", str(folder / "model"))


def test_the_table_is_big_enough():
    assert len(CASES) >= 80
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_cleanly(case: Case, tmp_path: Path, saved_tiny: Path, monkeypatch: pytest.MonkeyPatch):
    if case.pending is not None and (reason := case.pending()) is not None:
        pytest.skip(reason)
    monkeypatch.delenv("ALIGNKIT_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)  # relative paths in config files resolve here
    if case.max_record_bytes is not None:
        monkeypatch.setattr(data_io, "MAX_RECORD_BYTES", case.max_record_bytes)
    for name, content in case.files.items():
        path = tmp_path / name
        if content is MODEL:
            shutil.copytree(saved_tiny, path)
        elif content is EMPTY_DIR:
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            assert isinstance(content, bytes)
            path.write_bytes(content)
    if case.prepare is not None:
        case.prepare(tmp_path)
    runner = CliRunner()
    for command in case.setup:
        done = runner.invoke(app, [_fill(a, tmp_path) for a in command])
        assert done.exit_code == 0, done.output
    before = _snapshot(tmp_path)

    result = runner.invoke(app, [_fill(a, tmp_path) for a in case.argv])

    output = result.output
    assert result.exit_code == case.code, output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert "Traceback" not in output, output
    assert "error" in output.lower(), output
    for want in case.expect:
        assert _fill(want, tmp_path) in output, (want, output)
    after = _snapshot(tmp_path)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"pre-existing files changed or removed: {changed}"


def test_debug_flag_shows_the_traceback(tmp_path: Path):
    bad = tmp_path / "d.jsonl"
    bad.write_bytes(SFT + b'{"prompt": 1, "completion": "x"}\n')
    plain = CliRunner().invoke(app, ["sft", "--data", str(bad), "--output", str(tmp_path / "o")])
    assert plain.exit_code == 2 and f"error: {bad}:2: prompt:" in plain.output
    debug = CliRunner().invoke(app, ["--debug", "sft", "--data", str(bad), "--output", str(tmp_path / "o")])
    assert debug.exit_code == 1 and type(debug.exception).__name__ == "DataError"
