"""Whether a model may see several sequences packed into one row, decided per model by probing.

Padding-free packing (``alignkit.data.batching``) lays sequences end to end with positions
restarting at 0 and no 2-D attention mask; ``transformers`` then builds a block-diagonal causal
mask from the ``position_ids``. That only holds when the architecture's attention actually hands
``position_ids`` to its mask builder. OPT does not (nor Bloom, MPT, XGLM, BioGPT: their positions
are absolute or ALiBi, and their masks come from the 2-D attention mask alone), so on those
models a packed sequence silently attends to the ones before it in its row: log-probs, rewards and
DPO margins come out wrong, with no error.

Rather than trust a list, :func:`packing_is_exact` *measures*: it runs a short probe sequence
alone and again packed behind another one, and compares the last hidden states. Exactness is a
property of the code path (model class, attention implementation, dtype), not of the weights, so
the answer is cached per ``(class, attn_implementation, dtype)``. Models of the families above are
refused without probing (a probe on a tiny random model can only under-estimate the leak).
:func:`decide_packing` logs one line saying whether packed or padded rows are used.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger(__name__)

# Architectures whose attention mask ignores position_ids (absolute/ALiBi positions).
IGNORES_POSITION_IDS = frozenset({"opt", "bloom", "mpt", "xglm", "biogpt", "gpt_bigcode", "falcon_mamba", "mamba"})

_CACHE: dict[tuple[str, str, str], tuple[bool, str]] = {}
_LOGGED: set[tuple[tuple[str, str, str], bool]] = set()


def _base(model: torch.nn.Module) -> Any:
    """The transformers model under DDP and peft wrappers."""
    model = getattr(model, "module", model)
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _key(model: torch.nn.Module) -> tuple[str, str, str]:
    base = _base(model)
    config = getattr(base, "config", None)
    attn = str(getattr(config, "_attn_implementation", None) or "default")
    dtype = str(next(base.parameters()).dtype)
    return type(base).__name__, attn, dtype


@torch.no_grad()
def probe_packing(model: torch.nn.Module, tolerance: float | None = None) -> tuple[bool, float]:
    """``(exact, relative difference)`` of a probe sequence's last hidden states, alone vs packed.

    The probe is two short sequences of fixed pseudo-random token ids; the second one is scored
    alone (its own row) and behind the first (one row, positions restarting, no attention mask:
    exactly how ``collate`` packs). A leak across the boundary shows as a difference far above
    rounding noise (``tolerance``: 1e-4 relative in float32, 2e-2 in half precision).
    """
    base = _base(model)
    param = next(base.parameters())
    if tolerance is None:
        tolerance = 1e-4 if param.dtype == torch.float32 else 2e-2
    vocab = int(getattr(base.config, "vocab_size", 0) or 0) or 64
    gen = torch.Generator().manual_seed(1234)
    first = torch.randint(3, max(vocab, 4), (9,), generator=gen)
    second = torch.randint(3, max(vocab, 4), (7,), generator=gen)
    device = param.device
    was_training = base.training
    base.eval()
    try:
        alone = base(
            input_ids=second[None].to(device),
            position_ids=torch.arange(len(second))[None].to(device),
            output_hidden_states=True,
            use_cache=False,
        ).hidden_states[-1][0]
        packed_ids = torch.cat([first, second])[None].to(device)
        positions = torch.cat([torch.arange(len(first)), torch.arange(len(second))])[None].to(device)
        packed = base(input_ids=packed_ids, position_ids=positions, output_hidden_states=True, use_cache=False).hidden_states[-1][
            0, len(first) :
        ]
    finally:
        base.train(was_training)
    scale = alone.float().abs().max().clamp(min=1e-6)
    diff = float((packed.float() - alone.float()).abs().max() / scale)
    return diff <= tolerance, diff


def packing_is_exact(model: torch.nn.Module) -> tuple[bool, str]:
    """``(exact, why)`` for this model's code path, probed once per (class, attention, dtype)."""
    key = _key(model)
    if key not in _CACHE:
        model_type = str(getattr(_base(model).config, "model_type", ""))
        if model_type in IGNORES_POSITION_IDS:
            _CACHE[key] = (False, f"{model_type} attention ignores position_ids")
        else:
            exact, diff = probe_packing(model)
            verdict = "matches" if exact else "differs from"
            _CACHE[key] = (exact, f"probe: packed {verdict} unpacked (relative difference {diff:.1e})")
    return _CACHE[key]


def decide_packing(model: torch.nn.Module, requested: bool = True) -> bool:
    """Pack rows only when asked for and exact for ``model``; log the choice once per model kind."""
    if not requested:
        return False
    exact, why = packing_is_exact(model)
    key = _key(model)
    if (key, exact) not in _LOGGED:
        _LOGGED.add((key, exact))
        name, attn, dtype = key
        if exact:
            log.info("batching: packed rows (%s, attn=%s, %s; %s)", name, attn, dtype, why)
        else:
            log.warning("batching: padded rows, one sequence per row (%s, attn=%s, %s; %s)", name, attn, dtype, why)
    return exact
