"""Supervised Constitutional AI (SL-CAI): critique and revise responses against principles.

For each (red-team) prompt: sample a response; then, for each round, draw a principle, ask the
model to critique its latest response under it, and ask for a revision given the critique. Each
round continues the same conversation, as in the CAI paper, so later critiques see earlier ones.
Every step is kept in the trace (auditable data), and two datasets come out of it: SFT records
(prompt -> final revision) and preference pairs (revision chosen over the original response).

All prompts advance one step at a time in one batched ``backend.chat`` call, so a local model
generates in batches and an HTTP endpoint receives concurrent requests. Principle draws use an
RNG seeded by ``(seed, prompt index)``: the same seed gives the same principles whatever the batch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from alignkit.ai.backend import ChatBackend
from alignkit.ai.constitution import Constitution
from alignkit.data.io import write_records


class CAIRound(BaseModel):
    principle: str
    critique_request: str
    critique: str
    revision_request: str
    revision: str


class CAITrace(BaseModel):
    """Everything that happened to one prompt; ``final`` is the last revision (or the original)."""

    prompt: str
    response: str
    rounds: list[CAIRound] = []

    @property
    def final(self) -> str:
        return self.rounds[-1].revision if self.rounds else self.response

    def messages(self) -> list[dict[str, str]]:
        """The whole critique/revision conversation, as the model saw it."""
        msgs = [{"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.response}]
        for r in self.rounds:
            msgs += [
                {"role": "user", "content": r.critique_request},
                {"role": "assistant", "content": r.critique},
                {"role": "user", "content": r.revision_request},
                {"role": "assistant", "content": r.revision},
            ]
        return msgs


CRITIQUE_TEMPLATE = "Critique request: {request}\nWrite a short critique of your previous reply."
REVISION_TEMPLATE = "Revision request: {request}\nReply with the revised response only."


def run_sl_cai(
    backend: ChatBackend,
    prompts: Sequence[str],
    constitution: Constitution,
    rounds: int = 1,
    seed: int = 0,
    max_tokens: int = 256,
    temperature: float = 0.0,
) -> list[CAITrace]:
    """Sample, critique and revise every prompt for ``rounds`` rounds; returns one trace per prompt."""
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    prompts = list(prompts)
    rngs = [random.Random(f"sl-cai:{seed}:{i}") for i in range(len(prompts))]
    first = backend.chat(
        [[{"role": "user", "content": p}] for p in prompts], max_tokens=max_tokens, temperature=temperature, seed=seed
    )
    traces = [CAITrace(prompt=p, response=r) for p, r in zip(prompts, first)]
    for round_index in range(rounds):
        principles = [constitution.sample(rng) for rng in rngs]
        critique_requests = [CRITIQUE_TEMPLATE.format(request=pr.critique_request.strip()) for pr in principles]
        revision_requests = [REVISION_TEMPLATE.format(request=pr.revision_request.strip()) for pr in principles]
        step_seed = seed + 1 + 2 * round_index
        critiques = backend.chat(
            [t.messages() + [{"role": "user", "content": cr}] for t, cr in zip(traces, critique_requests)],
            max_tokens=max_tokens,
            temperature=temperature,
            seed=step_seed,
        )
        revisions = backend.chat(
            [
                t.messages()
                + [{"role": "user", "content": cr}, {"role": "assistant", "content": c}, {"role": "user", "content": rr}]
                for t, cr, c, rr in zip(traces, critique_requests, critiques, revision_requests)
            ],
            max_tokens=max_tokens,
            temperature=temperature,
            seed=step_seed + 1,
        )
        for t, pr, cr, c, rr, rev in zip(traces, principles, critique_requests, critiques, revision_requests, revisions):
            t.rounds.append(CAIRound(principle=pr.name, critique_request=cr, critique=c, revision_request=rr, revision=rev))
    return traces


def sft_records(traces: Sequence[CAITrace]) -> list[dict[str, Any]]:
    """(prompt, final revision) demonstrations; empty revisions are left out (nothing to learn)."""
    return [
        {"prompt": t.prompt, "completion": t.final, "source": "sl-cai", "principles": [r.principle for r in t.rounds]}
        for t in traces
        if t.final.strip()
    ]


def pair_records(traces: Sequence[CAITrace]) -> list[dict[str, Any]]:
    """(prompt, chosen=final revision, rejected=original response) pairs, for DPO/RM on CAI data.

    Pairs where the revision equals the original or either side is empty are left out: they carry
    no preference and would fail pair validation.
    """
    return [
        {
            "prompt": t.prompt,
            "chosen": t.final,
            "rejected": t.response,
            "source": "sl-cai",
            "principles": [r.principle for r in t.rounds],
        }
        for t in traces
        if t.rounds and t.final.strip() and t.response.strip() and t.final != t.response
    ]


def write_cai_outputs(traces: Sequence[CAITrace], output: str | Path) -> dict[str, Path]:
    """Write ``traces.jsonl``, ``sft.jsonl`` and ``pairs.jsonl`` into ``output``; returns their paths."""

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = {"traces": output / "traces.jsonl", "sft": output / "sft.jsonl", "pairs": output / "pairs.jsonl"}
    write_records(paths["traces"], [t.model_dump() | {"final": t.final} for t in traces])
    write_records(paths["sft"], sft_records(traces))
    write_records(paths["pairs"], pair_records(traces))
    return paths
