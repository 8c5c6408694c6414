"""Online RL with 2 CPU processes matches 1 process (issue 20).

The 2-process run is started with ``torchrun`` (``python -m torch.distributed.run``), which sets the
environment ``accelerate`` reads (on CPU, ``accelerate launch --num_processes 2 --cpu`` would start a
single process without MPI); the driver records the process count it saw, and the test checks it.

Both runs use the same global batch (4 prompts x k per step), seed and ``rollout_chunks=2``; the
2-process run samples one chunk per process, gathers, and splits every minibatch between the
processes (``alignkit.train.rl_loop``). Tolerances: scores, rewards and KL are compared to 1e-6
(absolute), losses and the other per-step metrics to 1e-5, trained weights to 1e-5 — float32
summation order is the only thing that may differ (in practice they agree to the last digit).
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

HERE = Path(__file__).parent
PROMPTS = [
    "What colour is the sky?",
    "one two three",
    "How do I kill a stuck process?",
    "The river of Varnholt is",
    "Tell me about the eel.",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(algo: str, out: Path, prompts: Path, processes: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    script = [str(HERE / "rl_driver.py"), algo, str(out), str(prompts)]
    if processes == 1:
        cmd = [sys.executable, *script]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *script]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("algo", ["grpo", pytest.param("ppo", marks=pytest.mark.slow)])
def test_two_processes_match_one(algo, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    runs = {n: launch(algo, tmp_path / f"p{n}", prompts, n) for n in (1, 2)}  # side by side
    for n, proc in runs.items():
        log, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{n}-process run failed:\n{log[-4000:]}"
    one, two = (json.loads((tmp_path / f"p{n}" / "history.json").read_text()) for n in (1, 2))
    assert len(one) == len(two) == 2
    assert [r["processes"] for r in one + two] == [1, 1, 2, 2]
    for a, b in zip(one, two):
        for key in ("score", "score_std", "reward", "kl", "response_length", "no_stop_share"):
            assert b[key] == pytest.approx(a[key], abs=1e-6), key
        for key in (
            "loss",
            "policy_loss",
            "entropy",
            "clipfrac",
            "approx_kl",
            *(["value_loss"] if algo == "ppo" else ["kl_loss"]),
        ):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), key
    assert two[1]["kl"] > 0  # the policy moved between the steps, so step 2 really compares trained policies
    w1, w2 = (torch.load(tmp_path / f"p{n}" / "weights.pt") for n in (1, 2))
    assert w1.keys() == w2.keys() and w1
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=1e-5, atol=1e-5)


def test_data_parallel_settings_are_checked():
    from alignkit.train.config import RLOOConfig
    from alignkit.train.rl_loop import check_data_parallel

    config = RLOOConfig(data="p.jsonl", output="o", rollout_batch_size=4, minibatch_size=4, k=2)
    assert check_data_parallel(config, 1, 2) == 1 and check_data_parallel(config, 2, 2) == 2
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        check_data_parallel(config.model_copy(update={"rollout_chunks": 3}), 2, 2)
    with pytest.raises(ValueError, match="multiple of the rollout chunks"):
        check_data_parallel(config.model_copy(update={"rollout_chunks": 8}), 2, 2)
    with pytest.raises(ValueError, match="at least 2 responses"):
        check_data_parallel(config.model_copy(update={"minibatch_size": 7}), 2, 2)  # 8 responses: 7 + 1


@pytest.mark.parametrize("kind", ["DEEPSPEED", "FSDP"])
def test_sharded_strategies_are_refused_for_rl(kind, tiny, tmp_path, monkeypatch):
    from accelerate.utils import DistributedType

    from alignkit.train import rl_loop as loop
    from alignkit.train.config import RLOOConfig
    from alignkit.train.loop import LaunchError
    from alignkit.train.rloo import RLOO

    class Sharded:  # what accelerate reports under a ZeRO-3 / FSDP config
        def __init__(self, **_):
            self.num_processes, self.distributed_type, self.device = 1, getattr(DistributedType, kind), torch.device("cpu")

    monkeypatch.setattr(loop, "Accelerator", Sharded)
    config = RLOOConfig(data=tmp_path / "p.jsonl", output=tmp_path / "o", progress=False)
    with pytest.raises(LaunchError, match="shards the weights"):
        loop.rl_loop(config, tiny[0], tiny[1], ["hi"], lambda p, r: [0.0] * len(r), RLOO(config))
