"""The monitoring judge: a 1..5 grade per logged answer, a flag below threshold, and a reason.

The grade is the judge's distribution over ``"1"``..``"5"`` as the next token (the soft verdict of
:mod:`alignkit.ai.judge`, here with a rubric and optional reference and passages quoted between
escaped markers). An answer is **flagged** when the judge puts more than half its mass on grades
below ``threshold``; that mass, ``p_bad``, is also the judge's confidence that the answer is bad,
and flagged answers are queued for review most-confident first, so reviewers' first hours go
where the judge is surest (and its doubtful flags come last, where a skipped task costs least).
With passages (a RAG system's log), the answer is also flagged when the judged faithfulness (share
of its sentences the passages support, :func:`alignkit.rag.evaluate.evaluate_rag`) is below
``min_faithfulness``. Reasons come from one short generation per flagged answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from alignkit.ai.backend import ChatBackend, softmax_options
from alignkit.ai.judge import GRADES, INSTRUCTIONS, quote
from alignkit.monitor.config import DEFAULT_RUBRIC
from alignkit.monitor.log import LogEntry
from alignkit.rag.evaluate import RagCase, evaluate_rag


def grade_prompt(
    prompt: str,
    response: str,
    rubric: str = DEFAULT_RUBRIC,
    criterion: str | None = None,
    reference: str | None = None,
    contexts: Sequence[str] = (),
) -> str:
    parts = ["You are grading one assistant response. " + INSTRUCTIONS]
    if criterion:
        parts.append(quote("CRITERION", criterion))
    parts.append(quote("PROMPT", prompt))
    parts += [quote(f"PASSAGE {i}", c) for i, c in enumerate(contexts, start=1)]
    if reference:
        parts.append(quote("REFERENCE", reference))
    parts.append(quote("RESPONSE", response))
    parts.append(f"{rubric.strip()} Answer with a single digit from 1 to 5.")
    return "\n\n".join(parts)


def reason_prompt(prompt: str, response: str) -> str:
    return "\n\n".join(
        [
            "You review one assistant response. " + INSTRUCTIONS,
            quote("PROMPT", prompt),
            quote("RESPONSE", response),
            "In one sentence, say what is wrong with the response.",
        ]
    )


def grade_distributions(backend: ChatBackend, prompts: Sequence[str]) -> list[list[float]]:
    convos = [[{"role": "user", "content": p}] for p in prompts]
    many = getattr(backend, "option_logprobs_many", None)
    lps = many(convos, GRADES) if many is not None else [backend.option_logprobs(c, GRADES) for c in convos]
    return [softmax_options(lp) for lp in lps]


@dataclass
class Verdict:
    entry: LogEntry
    probs: list[float]
    score: float  # expected grade
    p_bad: float  # P(grade < threshold)
    flagged: bool
    faithfulness: float | None = None
    reason: str = ""
    why: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.entry.id,
            "prompt": self.entry.prompt,
            "response": self.entry.response,
            "model": self.entry.model,
            "judge_score": round(self.score, 6),
            "judge_probs": [round(p, 6) for p in self.probs],
            "p_bad": round(self.p_bad, 6),
            "flagged": self.flagged,
            "faithfulness": None if self.faithfulness is None else round(self.faithfulness, 6),
            "reason": self.reason,
            "why": self.why,
        }


def judge_entries(
    backend: ChatBackend,
    entries: Sequence[LogEntry],
    threshold: float = 3.0,
    rubric: str = DEFAULT_RUBRIC,
    min_faithfulness: float | None = 1.0,
    reasons: bool = True,
    max_reason_tokens: int = 64,
) -> list[Verdict]:
    """Grade every entry; flag and explain the bad ones. ``threshold`` is a grade in (1, 5]."""
    if not 1.0 < threshold <= 5.0:
        raise ValueError(f"threshold must be a grade in (1, 5], got {threshold}")
    dists = grade_distributions(backend, [grade_prompt(e.prompt, e.response, rubric, contexts=e.contexts) for e in entries])
    with_ctx = [i for i, e in enumerate(entries) if e.contexts]
    faith: dict[int, float] = {}
    if with_ctx and min_faithfulness is not None:
        rows = evaluate_rag(backend, [RagCase(entries[i].prompt, entries[i].response, entries[i].contexts) for i in with_ctx])
        faith = {i: r["faithfulness"] for i, r in zip(with_ctx, rows)}
    verdicts = []
    for i, (e, probs) in enumerate(zip(entries, dists)):
        score = sum((g + 1) * p for g, p in enumerate(probs))
        p_bad = sum(p for g, p in enumerate(probs) if g + 1 < threshold)
        why = []
        if p_bad > 0.5:
            why.append(f"grade below {threshold:g} (P = {p_bad:.2f})")
        f = faith.get(i)
        if f is not None and min_faithfulness is not None and f == f and f < min_faithfulness:
            why.append(f"faithfulness {f:.2f} below {min_faithfulness:g}")
        verdicts.append(Verdict(e, probs, score, p_bad, bool(why), f, why=why))
    flagged = [v for v in verdicts if v.flagged]
    if reasons and flagged:
        convos = [[{"role": "user", "content": reason_prompt(v.entry.prompt, v.entry.response)}] for v in flagged]
        for v, text in zip(flagged, backend.chat(convos, max_tokens=max_reason_tokens, temperature=0.0)):
            v.reason = " ".join(text.split())
    return verdicts
