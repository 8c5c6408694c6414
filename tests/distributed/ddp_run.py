"""Entry point for the multi-process tests: ``torchrun --nproc_per_node N ddp_run.py OUT BATCH ACCUM SFT_DATA DPO_DATA``.

Runs one short SFT and one short DPO on the built-in tiny model (into ``OUT/sft`` and ``OUT/dpo``),
so the test can compare N processes with one process at the same global batch. One launch for
both stages: starting processes (imports) costs more than the training itself.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from alignkit.train.config import DPOConfig, SFTConfig
from alignkit.train.dpo import run_dpo
from alignkit.train.sft import run_sft


def settings(output: Path, batch_size: int, grad_accum: int) -> dict[str, Any]:
    return {
        "output": output,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "max_steps": 3,
        "lr": 1e-2,
        "eval_fraction": 0.0,
        "progress": False,
        "lr_schedule": "constant",
        "max_grad_norm": 1e9,  # no clipping, but grad_norm is logged
    }


def run_both(out: Path, batch_size: int, grad_accum: int, sft_data: Path, dpo_data: Path) -> None:
    run_sft(SFTConfig(data=sft_data, **settings(out / "sft", batch_size, grad_accum)))
    run_dpo(DPOConfig(data=dpo_data, **settings(out / "dpo", batch_size, grad_accum)))


if __name__ == "__main__":
    out, batch, accum, sft_data, dpo_data = sys.argv[1:6]
    run_both(Path(out), int(batch), int(accum), Path(sft_data), Path(dpo_data))
