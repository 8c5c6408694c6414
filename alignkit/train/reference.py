"""Reference log-probabilities for DPO and KTO, from one of three sources.

DPO and KTO compare the policy with a frozen *reference* model (usually the SFT model the run
starts from). There are three ways to get its log-probs, trading memory against compute:

* ``"copy"``: a frozen deep copy of the starting model, run on every batch. Simple, but holds two
  models in memory and costs a second forward pass per step.
* ``"adapter"``: with LoRA the base weights never change, so the reference is the policy itself with
  the adapter switched off (``peft``'s ``disable_adapter``). No second model; one extra forward pass.
* ``"precomputed"``: score every training and held-out sequence once before training and cache the
  numbers on disk (``output/reference_logps.pt``), keyed by a hash of the encoded data and a
  fingerprint of the starting weights, so a resumed or repeated run reuses them. No second model
  and no reference forward pass during training: the cheapest option when all weights are trained.

Whatever the source, the numbers come from :func:`alignkit.models.sequence_logprobs`, the same
function that scores the policy, so policy and reference are always computed the same way.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from alignkit.data.batching import packed_batch
from alignkit.data.chat import Encoded
from alignkit.data.files import atomic_path
from alignkit.models import is_lora, sequence_logprobs
from alignkit.models.packing import packing_is_exact
from alignkit.train.config import ReferenceKind
from alignkit.train.prefix_sharing import prefix_sharing_is_exact, shared_prefix_batch, tree_length

log = logging.getLogger(__name__)

CACHE_FILE = "reference_logps.pt"


def default_reference(kind: ReferenceKind | None, lora: bool) -> ReferenceKind:
    """``adapter`` with LoRA (free), else ``precomputed`` (no second model in memory)."""
    if kind is None:
        return "adapter" if lora else "precomputed"
    if kind == "adapter" and not lora:
        raise ValueError("--reference adapter needs --lora (the reference is the model with its adapter disabled)")
    return kind


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under a DistributedDataParallel wrapper, if any."""
    return getattr(model, "module", model)


@contextmanager
def adapter_disabled(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run ``model`` (a ``peft`` model) as its frozen base model inside the block."""
    inner: Any = _unwrap(model)  # a peft model: disable_adapter is not in torch.nn.Module's type
    if not is_lora(inner):
        raise ValueError("reference='adapter' needs a LoRA (peft) model")
    with inner.disable_adapter():
        yield inner


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy with gradients off, in eval mode (no dropout in the reference)."""
    ref = copy.deepcopy(_unwrap(model))
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


class Reference:
    """Live reference log-probs for a collated batch (the ``copy`` and ``adapter`` sources).

    The ``precomputed`` source needs no object at training time: its numbers travel inside the
    batch (see :func:`precompute_logps`), and :meth:`sequence_logps` is never called.
    """

    def __init__(self, kind: ReferenceKind, model: torch.nn.Module | None = None) -> None:
        self.kind = kind
        self.model = frozen_copy(model) if kind == "copy" and model is not None else None
        if kind == "copy" and model is None:
            raise ValueError("reference='copy' needs the starting model to copy")

    @torch.no_grad()
    def sequence_logps(self, policy: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-sequence reference log-probs, in the batch's sequence order."""
        if self.kind == "copy":
            ref = self.model
            assert ref is not None  # a "copy" reference is built with its model
            device = batch["input_ids"].device
            if next(ref.parameters()).device != device:
                ref.to(device)
            return sequence_logprobs(ref, batch).sequence_logps
        if self.kind == "adapter":
            with adapter_disabled(policy) as base:
                return sequence_logprobs(base, batch).sequence_logps
        raise RuntimeError("reference='precomputed': the batch should carry its reference log-probs")


# --------------------------------------------------------------------------- precomputation


@torch.no_grad()
def precompute_logps(
    model: torch.nn.Module,
    sequences: Sequence[Encoded],
    pad_id: int,
    max_length: int,
    batch_size: int = 16,
    progress: bool = True,
    pairs: bool = False,
) -> torch.Tensor:
    """Sum of completion-token log-probs of every sequence under ``model`` (input order).

    Sequences are sorted by length and packed (where packing is exact for ``model``, see
    :mod:`alignkit.models.packing`) so each forward pass wastes little on padding. ``pairs``:
    the sequences are DPO pairs laid out ``chosen0, rejected0, chosen1, ...``; where
    :func:`~alignkit.train.prefix_sharing.prefix_sharing_is_exact` allows it, each pair is scored as
    one tree, its prompt run once (``batch_size`` still counts sequences).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.zeros(len(sequences), dtype=torch.float32)
    pack = packing_is_exact(model)[0]
    if pairs and prefix_sharing_is_exact(model)[0]:
        pair_list = [(sequences[i], sequences[i + 1]) for i in range(0, len(sequences), 2)]
        by_tree = sorted(range(len(pair_list)), key=lambda i: tree_length(*pair_list[i]))
        step = max(1, batch_size // 2)
        for start in tqdm(range(0, len(by_tree), step), desc="reference log-probs", disable=not progress):
            chunk = by_tree[start : start + step]
            batch, where = shared_prefix_batch([pair_list[i] for i in chunk], pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            logps = sequence_logprobs(model, batch).sequence_logps[where.to(device)]
            out[torch.tensor([2 * i + side for i in chunk for side in (0, 1)])] = logps.float().cpu()
        model.train(was_training)
        return out
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    for chunk in tqdm(chunks, desc="reference log-probs", disable=not progress):
        batch, where = packed_batch([sequences[i] for i in chunk], pad_id, max_length, pack)
        batch = {k: v.to(device) for k, v in batch.items()}
        logps = sequence_logprobs(model, batch).sequence_logps[where.to(device)]
        out[torch.tensor(chunk)] = logps.float().cpu()
    model.train(was_training)
    return out


def model_fingerprint(model: torch.nn.Module, samples_per_tensor: int = 4096) -> str:
    """A cheap hash of the weights: names, shapes and a strided sample of each tensor's values.

    Hashing every byte of a 7B model would take longer than the cache saves; a strided sample
    still changes whenever the starting checkpoint does.
    """
    h = hashlib.sha256()
    for name, p in _unwrap(model).state_dict().items():
        flat = p.detach().reshape(-1)
        stride = max(1, flat.numel() // samples_per_tensor)
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
        h.update(flat[::stride].float().cpu().numpy().tobytes())
    return h.hexdigest()


def data_fingerprint(sequences: Sequence[Encoded]) -> str:
    """Hash of token ids and target masks: covers data, tokenizer, template and max length."""
    h = hashlib.sha256()
    for s in sequences:
        h.update(bytes(str(s.input_ids), "ascii"))
        h.update(bytes(bytearray(s.loss_mask)))
        h.update(b"|")
    return h.hexdigest()


def cached_reference_logps(
    output: Path,
    model: torch.nn.Module,
    splits: Mapping[str, Sequence[Encoded]],
    compute: Callable[[Sequence[Encoded]], torch.Tensor],
    extra_key: str = "",
) -> tuple[dict[str, torch.Tensor], bool]:
    """Reference log-probs per split, from ``output/reference_logps.pt`` when its key matches.

    Returns ``(logps_by_split, reused)``. The key hashes the model fingerprint, every split's
    encoded sequences and ``extra_key`` (e.g. the objective's name), so stale numbers are never
    reused: a changed dataset, tokenizer, max length or starting model recomputes.
    """
    key = hashlib.sha256(
        "|".join(
            [model_fingerprint(model), extra_key, *(f"{n}:{data_fingerprint(s)}" for n, s in sorted(splits.items()))]
        ).encode()
    ).hexdigest()
    path = Path(output) / CACHE_FILE
    if path.exists():
        try:
            saved: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("key") == key:
                log.info("reusing reference log-probs from %s", path)
                return dict(saved["logps"]), True
            log.info("%s was computed for other data or another model; recomputing", path)
        except Exception as err:  # a half-written or foreign file is recomputed, not trusted
            log.warning("cannot read %s (%s); recomputing", path, err)
    logps = {name: compute(seqs) for name, seqs in splits.items()}
    with atomic_path(path) as tmp:  # a unique temp name: several processes may write at once
        torch.save({"key": key, "logps": logps}, tmp)
    return logps, False
