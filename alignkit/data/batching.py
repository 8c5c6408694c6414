"""Padding and packing encoded sequences into training batches.

A batch is a list of *rows*; each row holds one or more sequences laid end to end. Unpacked
training uses one sequence per row (right padding); packing puts several per row to cut padding.
Either way the collated batch carries:

* ``input_ids``, ``loss_mask`` (targets), ``position_ids`` — (rows, length)
* ``sequence_ids`` — (rows, length): which sequence of the batch each token belongs to, -1 for
  padding. The one log-prob function uses it to sum token log-probs per sequence, so packed and
  padded batches give per-sequence results in the same order.

No cross-contamination between packed sequences: positions restart at 0 for each sequence and no
2-D attention mask is passed, so ``transformers`` (>= 5) builds a block-diagonal causal mask from
the position ids. Padding continues the last sequence's positions, so a right-padded batch stays an
ordinary causal batch (real tokens never attend to padding to their right).

Packing is only exact for models whose attention honours ``position_ids`` (OPT, Bloom and kin do
not); ``alignkit.models.packing.decide_packing`` decides per model, and ``packed_batch(...,
pack=False)`` / ``collate(..., attention_mask=True)`` give the padded layout (one sequence per row,
with a 2-D attention mask) the same downstream code reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alignkit.data.chat import Encoded


def pack_greedy(sequences: list[Encoded], max_length: int) -> list[list[int]]:
    """Group sequence indices into rows of at most ``max_length`` tokens (first fit, in order).

    Order-preserving first fit keeps the packing deterministic and cheap; a sequence longer than
    ``max_length`` gets a row of its own.
    """
    rows: list[list[int]] = []
    room: list[int] = []
    for i, seq in enumerate(sequences):
        for r, free in enumerate(room):
            if len(seq) <= free:
                rows[r].append(i)
                room[r] -= len(seq)
                break
        else:
            rows.append([i])
            room.append(max(max_length - len(seq), 0))
    return rows


def collate(rows: list[list[Encoded]], pad_id: int, attention_mask: bool = False) -> dict[str, torch.Tensor]:
    """Lay out rows of sequences as tensors; sequence ids count up across the whole batch.

    ``attention_mask=True`` (rows of one sequence each) adds the 2-D mask of real tokens, which
    also switches off ``transformers``' packed-sequence detection.
    """
    if attention_mask and any(len(row) > 1 for row in rows):
        raise ValueError("attention_mask=True needs one sequence per row (a 2-D mask cannot separate packed sequences)")
    width = max(sum(len(s) for s in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    loss_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    sequence_ids = torch.full((len(rows), width), -1, dtype=torch.long)
    seq = 0
    for r, row in enumerate(rows):
        at = 0
        for s in row:
            n = len(s)
            input_ids[r, at : at + n] = torch.tensor(s.input_ids)
            loss_mask[r, at : at + n] = torch.tensor(s.loss_mask)
            position_ids[r, at : at + n] = torch.arange(n)
            sequence_ids[r, at : at + n] = seq
            at += n
            seq += 1
        last = int(position_ids[r, at - 1]) if at else -1
        position_ids[r, at:] = torch.arange(last + 1, last + 1 + width - at)
    out = {
        "input_ids": input_ids,
        "loss_mask": loss_mask,
        "position_ids": position_ids,
        "sequence_ids": sequence_ids,
        "num_sequences": torch.tensor(seq),
    }
    if attention_mask:
        out["attention_mask"] = (sequence_ids >= 0).long()
    return out


def left_pad(prompts: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded prompts for generation: every prompt ends at the same column."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        input_ids[i, width - len(p) :] = torch.tensor(p)
        attention_mask[i, width - len(p) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def packed_batch(
    sequences: Sequence[Encoded], pad_id: int, max_length: int, pack: bool = True
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pack ``sequences`` into rows; also return where each input sequence landed.

    ``pack=False`` gives one right-padded sequence per row with an attention mask instead (for
    models where packing is not exact, see ``alignkit.models.packing``); ``where`` is then the
    identity.

    Rows are at most twice the longest sequence of the batch (and at most ``max_length``): the
    attention of a packed row costs its full width squared (the block-diagonal mask is applied,
    not skipped, on CPU), so very wide rows lose what packing saves on padding. Sequences are
    placed longest first (first-fit decreasing), which fills rows more evenly.

    The collated batch numbers sequences in row order, so ``where[i]`` is the batch position of
    ``sequences[i]``: ``sequence_logps[where]`` lists the results in input order.
    """
    if not pack:
        batch = collate([[s] for s in sequences], pad_id, attention_mask=True)
        batch["where"] = torch.arange(len(sequences))
        return batch, batch["where"]
    by_length = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    longest = len(sequences[by_length[0]])
    width = max(longest, min(max_length, 2 * longest))
    rows = [[by_length[j] for j in row] for row in pack_greedy([sequences[i] for i in by_length], width)]
    batch = collate([[sequences[i] for i in row] for row in rows], pad_id)
    order = [i for row in rows for i in row]
    where = torch.empty(len(order), dtype=torch.long)
    where[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
    batch["where"] = where
    return batch, where
