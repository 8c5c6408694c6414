"""The one optimisation loop every offline objective (SFT, reward model, DPO, KTO) runs in.

Read it top to bottom: build the optimizer and schedule, restore the latest checkpoint if there is
one, then for each step take ``grad_accum`` micro-batches, sum their scaled losses, clip, step.

Loss normalisation. A step's loss is the mean over *every* item (target token for SFT, pair for
DPO, ...) of the step, across micro-batches and processes, not the mean of per-micro-batch means:
otherwise a micro-batch with few target tokens weighs as much as one with many, and 2 processes x
batch 4 would not equal 1 x 8. Objectives say how many items their loss averages over
(``weight(batch)``, optional: 1 per micro-batch otherwise); the step's total is summed over
processes before the first backward pass and each micro-batch's mean is rescaled by
``weight * processes / total`` (DDP then averages over processes). This is what ``transformers``
and TRL do with ``num_items_in_batch``. Logged metrics are averaged over processes, not rank 0's.

Determinism and exact resume rest on one idea: the data order is a pure function of the seed and
the global position in the stream (epoch ``e`` is permutation ``seed + e`` of the training units),
so a resumed run only needs the step number to continue with the very same micro-batches. Model,
optimizer, scheduler and RNG states come back through ``accelerate``'s ``save_state``/``load_state``.

An *objective* is anything with two methods:

* ``collate(units) -> batch``: turn a list of training units (examples, packed rows, ranking
  groups — whatever the objective chose) into a dict of tensors;
* ``loss(model, batch) -> (loss, metrics)``: a scalar to minimise and a dict of floats to log.
  ``metrics`` may carry ``"tokens"`` (real tokens in the batch) for the throughput figure.

and optionally ``weight(batch) -> float``, the number of items ``loss`` is a mean over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import get_scheduler

from alignkit.data.errors import DataError
from alignkit.models.loading import enable_gradient_checkpointing
from alignkit.train.config import TrainingConfig

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
METRICS_FILE = "metrics.jsonl"


class Objective(Protocol):
    def collate(self, units: Sequence[Any]) -> dict[str, torch.Tensor]: ...

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]: ...


class TrainingDiverged(RuntimeError):
    """Raised when the loss (or another watched metric) stops being finite."""


class LaunchError(RuntimeError):
    """The processes that started are not the ones that were asked for (a silent fallback)."""


# --------------------------------------------------------------------------- launch checks


_PROCESS_FLAGS = ("--num_processes", "--num-processes", "--nproc_per_node", "--nproc-per-node")


def requested_processes(cmdline: Sequence[str]) -> int | None:
    """Processes asked for on a launcher command line (``accelerate launch``/``torchrun``), if said."""
    for i, arg in enumerate(cmdline):
        for flag in _PROCESS_FLAGS:
            if arg == flag and i + 1 < len(cmdline) and cmdline[i + 1].isdigit():
                return int(cmdline[i + 1])
            if arg.startswith(flag + "=") and arg.split("=", 1)[1].isdigit():
                return int(arg.split("=", 1)[1])
    return None


def _launcher_cmdline() -> list[str]:
    """The parent process's command line (Linux ``/proc``; empty where unavailable)."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def check_launch(num_processes: int, cuda: bool, cmdline: Sequence[str] | None = None) -> None:
    """Fail loudly where a launch silently fell back to something else.

    * ``accelerate launch --cpu --num_processes 2`` starts ONE process on a CPU machine (accelerate's
      multi-CPU mode needs mpirun); training would run with half the global batch, without a word.
    * ``--use_fsdp`` / DeepSpeed without a GPU silently became plain data parallel.
    """
    cmdline = _launcher_cmdline() if cmdline is None else cmdline
    asked = requested_processes(cmdline)
    # Only the silent fall-back to ONE process: with several nodes, per-node and total counts differ legitimately.
    if asked is not None and asked > 1 and num_processes == 1:
        raise LaunchError(
            f"the launcher asked for {asked} processes but this run has {num_processes} "
            f"({' '.join(cmdline[:6])} ...). On CPU, `accelerate launch` cannot start several processes "
            f"without mpirun: use `torchrun --nproc_per_node {asked} -m alignkit ...` instead."
        )
    if not cuda:
        for var, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
            if os.environ.get(var, "").lower() in ("1", "true", "yes"):
                raise LaunchError(f"{name} was requested ({var}) but no GPU is available; it would silently run as plain DDP")


@dataclass
class TrainResult:
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    eval_history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0
    model: Any = None


# --------------------------------------------------------------------------- data order


def unit_order(num_units: int, seed: int, start: int, count: int) -> list[int]:
    """Indices of units at stream positions ``start .. start+count-1``.

    Epoch ``e`` is ``randperm(num_units)`` drawn from a generator seeded with ``seed + e``; the
    stream is the concatenation of epochs. Being a function of position only, it needs no state.
    """
    out: list[int] = []
    cache: dict[int, list[int]] = {}
    for pos in range(start, start + count):
        epoch, offset = divmod(pos, num_units)
        if epoch not in cache:
            gen = torch.Generator().manual_seed(seed + epoch)
            cache[epoch] = torch.randperm(num_units, generator=gen).tolist()
        out.append(cache[epoch][offset])
    return out


def total_steps(config: TrainingConfig, num_units: int, world_size: int = 1) -> int:
    if config.max_steps is not None:
        return config.max_steps
    per_step = config.batch_size * config.grad_accum * world_size
    return max(1, math.ceil(config.epochs * num_units / per_step))


# --------------------------------------------------------------------------- checkpoints


def latest_checkpoint(output: Path) -> Path | None:
    """The newest complete checkpoint (half-written ``*.tmp`` folders are ignored)."""
    folder = output / CHECKPOINTS
    if not folder.is_dir():
        return None
    done = [p for p in folder.iterdir() if p.is_dir() and not p.name.endswith(".tmp") and (p / STATE_FILE).exists()]
    return max(done, key=lambda p: json.loads((p / STATE_FILE).read_text())["step"], default=None)


def checkpoint_before(output: Path, step: int) -> Path | None:
    """The newest complete checkpoint from a step before ``step``."""
    folder = output / CHECKPOINTS
    if not folder.is_dir():
        return None
    found = [
        (json.loads((p / STATE_FILE).read_text())["step"], p)
        for p in folder.iterdir()
        if p.is_dir() and not p.name.endswith(".tmp") and (p / STATE_FILE).exists()
    ]
    return max(((n, p) for n, p in found if n < step), default=(0, None))[1]


def restore_latest(accelerator: Accelerator, output: Path, enabled: bool) -> tuple[int, dict[str, Any]]:
    """Load the newest checkpoint into ``accelerator`` (if ``enabled`` and one exists): ``(step, saved state)``."""
    checkpoint = latest_checkpoint(output) if enabled else None
    if checkpoint is None:
        return 0, {}
    accelerator.load_state(str(checkpoint))
    state = json.loads((checkpoint / STATE_FILE).read_text())
    log.info("resumed from %s (step %d)", checkpoint, state["step"])
    return int(state["step"]), state


def save_checkpoint(accelerator: Accelerator, output: Path, step: int, keep: int, extra: dict[str, Any]) -> Path:
    """Write to ``step-N.tmp`` then rename, so a kill mid-save never leaves a corrupt "latest"."""
    folder = output / CHECKPOINTS
    final = folder / f"step-{step:07d}"
    tmp = folder / f"step-{step:07d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **extra}, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        done = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.endswith(".tmp"))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


# --------------------------------------------------------------------------- metric sinks


class MetricsWriter:
    """metrics.jsonl always; TensorBoard / MLflow / Weights & Biases when asked for and installed.

    wandb runs are named after the output folder and resumed with it (``id`` from the folder), and
    honour ``WANDB_MODE`` (``offline`` writes under ``output/wandb`` without a network).
    """

    def __init__(self, output: Path, report_to: str, resume_step: int, enabled: bool, config: Any = None) -> None:
        self.enabled = enabled
        self.path = output / METRICS_FILE
        self.config = config
        self.sinks: list[Callable[[dict[str, float], int], None]] = []
        self.closers: list[Callable[[], None]] = []
        if not enabled:
            return
        output.mkdir(parents=True, exist_ok=True)
        # On resume, drop lines logged after the checkpoint so the file reads as one clean run.
        if self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        for name in filter(None, (s.strip() for s in report_to.split(","))):
            self._add_sink(name, output)

    def _add_sink(self, name: str, output: Path) -> None:
        try:
            if name == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(output / "tensorboard"))

                def to_tensorboard(m: dict[str, float], s: int) -> None:
                    for k, v in m.items():
                        writer.add_scalar(k, v, s)

                self.sinks.append(to_tensorboard)
            elif name == "mlflow":
                import mlflow

                self.sinks.append(lambda m, s: mlflow.log_metrics(m, step=s))
            elif name == "wandb":
                self._add_wandb(output)
            else:
                raise ValueError(f"unknown --report-to sink '{name}' (expected tensorboard, mlflow or wandb)")
        except ImportError:
            log.warning("--report-to %s: package not installed, skipping that sink", name)

    def _add_wandb(self, output: Path) -> None:
        import wandb  # optional (the dev extra installs it)

        resolved = output.resolve()
        config = self.config.model_dump(mode="json") if hasattr(self.config, "model_dump") else None
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "alignkit"),
            name=resolved.name,
            id=hashlib.sha256(str(resolved).encode()).hexdigest()[:16],  # the same folder resumes the same run
            resume="allow",
            dir=str(output),
            config=config,
        )
        self.sinks.append(lambda m, s: run.log(m, step=s))
        self.closers.append(run.finish)

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers = []

    def write(self, record: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        numeric = {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        for sink in self.sinks:
            sink(numeric, int(record["step"]))


# --------------------------------------------------------------------------- the loop


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _as_float(value: Any) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _mean_over_processes(metrics: dict[str, float], tokens: int) -> tuple[dict[str, float], int]:
    """Each metric averaged over the processes that logged it; tokens summed (all ranks call this)."""
    gathered = gather_object([(metrics, tokens)])
    keys = sorted({k for m, _ in gathered for k in m})
    mean = {k: sum(m[k] for m, _ in gathered if k in m) / sum(1 for m, _ in gathered if k in m) for k in keys}
    return mean, sum(t for _, t in gathered)


def evaluate(
    model: torch.nn.Module, objective: Objective, units: Sequence[Any], batch_size: int, device: torch.device
) -> dict[str, float]:
    """Average the objective's metrics over ``units``, weighting each batch by its size."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    total = 0
    with torch.no_grad():
        for start in range(0, len(units), batch_size):
            chunk = units[start : start + batch_size]
            loss, metrics = objective.loss(model, _to_device(objective.collate(chunk), device))
            for k, v in {"loss": loss, **metrics}.items():
                sums[k] = sums.get(k, 0.0) + _as_float(v) * len(chunk)
            total += len(chunk)
    model.train(was_training)
    return {f"eval/{k}": v / max(total, 1) for k, v in sums.items()}


def collate_chunks(objective: Objective, units: Sequence[Any], max_tokens: int | None) -> list[dict[str, torch.Tensor]]:
    """``objective.collate(units)``, split in halves (recursively) while a batch holds more than ``max_tokens`` positions.

    Chunked backward: each chunk runs forward and backward on its own, so only one chunk's
    activations are alive at a time, and the loop weighs each chunk's mean loss by its share of
    the step's items, so the summed gradient is the whole micro-batch's (up to float rounding).
    """
    batch = objective.collate(units)
    if max_tokens is None or len(units) < 2 or batch["input_ids"].numel() <= max_tokens:
        return [batch]
    half = len(units) // 2
    return collate_chunks(objective, units[:half], max_tokens) + collate_chunks(objective, units[half:], max_tokens)


def train(
    config: TrainingConfig,
    model: torch.nn.Module,
    objective: Objective,
    train_units: Sequence[Any],
    eval_units: Sequence[Any] = (),
    on_step_end: Callable[[int, dict[str, float]], None] | None = None,
    extra_state: dict[str, Any] | None = None,
) -> TrainResult:
    """Optimise ``objective`` over ``train_units``; checkpoints and metrics go to ``config.output``.

    ``on_step_end(step, metrics)`` runs after every optimizer step (and after that step's
    checkpoint), e.g. for early stopping; an exception raised there stops training like a crash
    would, leaving the last checkpoint to resume from.
    """
    if not train_units:
        raise DataError(
            config.data,
            None,
            "max_length",
            f"at least one example that fits in --max-length {config.max_length} (prompt plus a completion token)",
            seen="none left after dropping bad and too-long records (counted in the warnings above)",
        )
    output = Path(config.output)
    cuda = torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=config.mixed_precision if cuda else "no", cpu=not cuda)
    check_launch(accelerator.num_processes, torch.cuda.is_available())
    device = accelerator.device
    torch.manual_seed(config.seed)  # dropout and any other in-loop randomness
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)

    params = [p for p in model.parameters() if p.requires_grad]
    # The fused kernel (one pass per tensor, CPU and CUDA) is what transformers' Trainer picks by default too.
    fused = all(p.dtype in (torch.float32, torch.float16, torch.bfloat16) and p.device.type in ("cpu", "cuda") for p in params)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    steps = total_steps(config, len(train_units), accelerator.num_processes)
    schedule = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}[config.lr_schedule]
    scheduler = get_scheduler(schedule, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    # The scheduler is stepped by hand once per optimizer step (not prepared: accelerate would
    # step it once per process), but it must still be saved and restored with the rest.
    accelerator.register_for_checkpointing(scheduler)

    start_step, _ = restore_latest(accelerator, output, config.resume)
    writer = MetricsWriter(output, config.report_to, start_step, accelerator.is_main_process, config)
    result = TrainResult(steps=steps, resumed_from=start_step)

    micro_per_step = config.grad_accum
    world = accelerator.num_processes
    stream_per_micro = config.batch_size * world
    weigh = getattr(objective, "weight", None)
    model.train()
    bar = tqdm(total=steps, initial=start_step, disable=not (config.progress and accelerator.is_main_process), desc="train")
    for step in range(start_step + 1, steps + 1):
        started = time.perf_counter()
        step_metrics: dict[str, float] = {}
        tokens = 0
        batches = []
        for micro in range(micro_per_step):
            index = (step - 1) * micro_per_step + micro
            start = index * stream_per_micro + accelerator.process_index * config.batch_size
            units = [train_units[i] for i in unit_order(len(train_units), config.seed, start, config.batch_size)]
            batches.extend(collate_chunks(objective, units, config.max_forward_tokens))
        weights = [float(weigh(b)) if weigh is not None else 1.0 for b in batches]
        # Items in the whole step, over micro-batches and processes (the denominator of its loss).
        step_weight = float(accelerator.reduce(torch.tensor(sum(weights), device=device), "sum"))
        # The logged loss is summed in float64 (MPS has none): float32 sums of the same micro-batch
        # losses differ in the last bits with the batching, which a float64 model would otherwise see.
        loss_sum = torch.zeros((), device=device, dtype=torch.float32 if device.type == "mps" else torch.float64)
        for micro, cpu_batch in enumerate(batches):
            batch = _to_device(cpu_batch, device)
            is_last = micro == len(batches) - 1
            # Gradients are all-reduced only on the last micro-batch of a step.
            sync = accelerator.no_sync(model) if not is_last else nullcontext()
            with sync, accelerator.autocast():
                loss, metrics = objective.loss(model, batch)
                if not torch.isfinite(loss):
                    last = latest_checkpoint(output)
                    raise TrainingDiverged(
                        f"loss became {loss.item()} at step {step}; stopped. "
                        f"Last good checkpoint: {last or 'none yet'} (lower --lr or check the data)."
                    )
                # loss is a mean over weights[micro] items; DDP averages gradients over processes.
                accelerator.backward(loss * (weights[micro] * world / max(step_weight, 1e-12)))
            loss_sum += loss.detach().to(loss_sum.dtype) * weights[micro]
            tokens += int(_as_float(metrics.pop("tokens", batch["input_ids"].numel())))
            for k, v in metrics.items():  # a weighted mean over the step's batches (equal ones: a plain mean)
                step_metrics[k] = step_metrics.get(k, 0.0) + _as_float(v) * weights[micro] / sum(weights)
        step_loss = float(accelerator.reduce(loss_sum, "sum")) / max(step_weight, 1e-12)
        if world > 1:
            step_metrics, tokens = _mean_over_processes(step_metrics, tokens)
        grad_norm = None
        if config.max_grad_norm is not None:
            grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        elapsed = time.perf_counter() - started
        record = {
            "step": step,
            "loss": step_loss,
            **step_metrics,
            "lr": scheduler.get_last_lr()[0],
            "tokens_per_s": tokens / max(elapsed, 1e-9),
            "epoch": step * micro_per_step * stream_per_micro / len(train_units),
        }
        if grad_norm is not None:
            record["grad_norm"] = _as_float(grad_norm)
        result.history.append(record)
        if step % config.log_every == 0 or step == steps:
            writer.write(record)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")

        if eval_units and (step == steps or (config.eval_every and step % config.eval_every == 0)):
            eval_record = {"step": step, **evaluate(model, objective, eval_units, config.batch_size, device)}
            result.eval_history.append(eval_record)
            writer.write(eval_record)
        if step % config.save_every == 0 or step == steps:
            save_checkpoint(accelerator, output, step, config.keep_checkpoints, extra_state or {})
        if on_step_end is not None:
            on_step_end(step, record)
    bar.close()
    writer.close()
    result.model = accelerator.unwrap_model(model)
    return result
