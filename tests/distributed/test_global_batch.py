"""Loss normalisation by the step's global item count, and honest multi-process launches (issue #17).

2 processes x batch 4 == 1 x batch 8 == 1 x batch 4 x accumulation 2 (same data, same global
batch): the saved weights agree to float rounding. The 2-process runs use ``torchrun`` on CPU
(gloo); ``accelerate launch --cpu --num_processes 2`` (which starts one process) must fail loudly.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignkit.train.loop import LaunchError, check_launch, requested_processes

sys.path.insert(0, str(Path(__file__).parent))
from ddp_run import run_both, settings  # noqa: E402  (the torchrun entry point, shared with the in-process runs)

RUNNER = Path(__file__).with_name("ddp_run.py")
ROOT = Path(__file__).resolve().parents[2]


def sft_rows():
    # Completions of very different lengths, so micro-batches hold very different target counts.
    return [{"prompt": f"Question {i}?", "completion": " ".join(["word"] * (1 + 9 * (i % 4)))} for i in range(16)]


def dpo_rows():
    return [
        {"prompt": f"What is {i} plus {i}?", "chosen": f"It is {2 * i}." + " yes" * (i % 5), "rejected": "I do not know."}
        for i in range(16)
    ]


def write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def assert_same_metrics(a: Path, b: Path) -> None:
    """Loss and gradient norm of every step (clipping is off at 1e9, so grad_norm is the raw norm).

    Adam hides a rescaled gradient in the weights (its first steps move each weight by about lr
    whatever the scale), and at random init every token's loss is about log(vocab); by the third
    step per-token losses differ between micro-batches and a per-micro-batch mean shows (~1e-3).
    """
    ra = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == [1, 2, 3]
    for x, y in zip(ra, rb):
        assert x["loss"] == pytest.approx(y["loss"], rel=2e-5)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """1 x 8 and 1 x 4 x accumulation 2 in this process; 2 processes x 4 under torchrun (one launch)."""
    root = tmp_path_factory.mktemp("global_batch")
    sft_data, dpo_data = write(root / "sft.jsonl", sft_rows()), write(root / "dpo.jsonl", dpo_rows())
    run_both(root / "1x8", 8, 1, sft_data, dpo_data)
    from alignkit.train.config import SFTConfig
    from alignkit.train.sft import run_sft

    run_sft(SFTConfig(data=sft_data, **settings(root / "1x4x2" / "sft", 4, 2)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
    cmd += ["--master_addr=127.0.0.1", str(RUNNER), str(root / "2x4"), "4", "1", str(sft_data), str(dpo_data)]
    done = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_accumulation_equals_the_larger_batch_in_one_process(runs):
    """Failed before #17: each micro-batch was averaged over its own target tokens."""
    assert_same_metrics(runs / "1x8" / "sft", runs / "1x4x2" / "sft")
    assert max_diff(weights(runs / "1x8" / "sft"), weights(runs / "1x4x2" / "sft")) < 1e-3  # Adam: ~lr (1e-2) per step


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_two_processes_equal_one_at_the_same_global_batch(runs, stage):
    assert_same_metrics(runs / "2x4" / stage, runs / "1x8" / stage)  # losses reduced over ranks, not rank 0's
    assert max_diff(weights(runs / "2x4" / stage), weights(runs / "1x8" / stage)) < 1e-3


def test_accelerate_cpu_launch_of_two_processes_fails_loudly(tmp_path):
    data = write(tmp_path / "sft.jsonl", sft_rows())
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1"]
    cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", str(RUNNER), str(tmp_path / "o"), "4", "1", str(data), str(data)]
    done = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "asked for 2 processes but this run has 1" in done.stderr and "torchrun" in done.stderr


def test_launch_checks():
    assert requested_processes(["accelerate", "launch", "--cpu", "--num_processes", "2", "x.py"]) == 2
    assert requested_processes(["torchrun", "--nproc-per-node=4", "x.py"]) == 4
    assert requested_processes(["python", "x.py"]) is None
    check_launch(2, cuda=False, cmdline=["torchrun", "--nproc_per_node", "2"])
    with pytest.raises(LaunchError, match="asked for 2 processes"):
        check_launch(1, cuda=False, cmdline=["accelerate", "launch", "--num_processes", "2"])


def test_fsdp_without_a_gpu_is_an_error(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(LaunchError, match="FSDP was requested"):
        check_launch(1, cuda=False, cmdline=[])
    check_launch(1, cuda=True, cmdline=[])
