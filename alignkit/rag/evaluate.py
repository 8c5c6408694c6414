"""RAG evaluation by a judge model: faithfulness, answer relevancy, context precision and recall.

The four measures of RAGAS (Es et al., "RAGAS: Automated Evaluation of Retrieval Augmented
Generation", 2023), each computed from yes/no verdicts of a judge on any
:class:`~alignkit.ai.backend.ChatBackend`. A verdict is the judge's probability of "yes", read from
the option log-probs of ``yes``/``no`` as the next token (no parsing, a calibrated number):

* **faithfulness** = share of the answer's claims supported by the retrieved passages. RAGAS asks
  an LLM to decompose the answer into claims; we split it into sentences (citations removed) and
  ask the judge, per sentence, whether it makes a factual claim at all and whether the passages
  support it: faithfulness = sum p_claim * [supported] / sum p_claim over the sentences judged
  claims (NaN when none is), so "I hope that helps." neither helps nor hurts.
* **answer relevancy**: P(the answer answers the question asked, right or wrong). RAGAS generates
  questions back from the answer and compares embeddings, and scores non-committal answers 0;
  with a judge we ask directly, and tell it that "I don't know" does not answer.
* **context precision**: rank-weighted precision of the passages judged relevant,
  ``sum_k precision@k * v_k / sum_k v_k`` (RAGAS), with soft relevances ``v_k``.
* **context recall**: share of the reference answer's sentences attributable to the passages
  (needs a reference answer; NaN otherwise).

All quoted material sits between escaped markers (:func:`alignkit.ai.judge.quote`), so an answer or
a passage cannot close its quote and instruct the judge. :func:`judge_error` compares judge
estimates with exact values (the sandbox computes them from ground truth) and reports the
correlation, mean absolute error and the error rate of the thresholded verdicts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alignkit.ai.backend import ChatBackend, softmax_options
from alignkit.ai.judge import INSTRUCTIONS, quote
from alignkit.rag.prompt import strip_citations

YES_NO = ["yes", "no"]
METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")

FAITHFUL_Q = "Is every factual claim in the STATEMENT supported by the PASSAGES? Answer yes or no."
CLAIM_Q = "Does the STATEMENT make a factual claim (not just a greeting, an offer of help or 'I don't know')? Answer yes or no."
RELEVANT_Q = (
    "Does the ANSWER answer the QUESTION that was asked, whether or not it is correct? A non-committal answer "
    "such as 'I don't know' does not. Answer yes or no."
)
CONTEXT_Q = "Is the PASSAGE useful for answering the QUESTION? Answer yes or no."
RECALL_Q = "Can the STATEMENT be attributed to the PASSAGES? Answer yes or no."

_SENT = re.compile(r"(?<=[.!?])\s+")


def split_claims(text: str) -> list[str]:
    """The answer's sentences, citations removed (empty pieces dropped)."""
    return [s for s in (p.strip() for p in _SENT.split(strip_citations(text))) if s]


def _passages(contexts: Sequence[str]) -> str:
    return "\n".join(quote(f"PASSAGE {i}", c) for i, c in enumerate(contexts, start=1))


def faithfulness_prompt(claim: str, contexts: Sequence[str], question: str = "") -> str:
    head = ["You check statements from an answer to a question against passages. " + INSTRUCTIONS, quote("QUESTION", question)]
    return "\n\n".join([*head, _passages(contexts), quote("STATEMENT", claim), FAITHFUL_Q])


def claim_prompt(statement: str, question: str = "") -> str:
    head = "You read one statement from an answer to a question. " + INSTRUCTIONS
    return "\n\n".join([head, quote("QUESTION", question), quote("STATEMENT", statement), CLAIM_Q])


def relevancy_prompt(question: str, answer: str) -> str:
    return "\n\n".join(
        [
            "You check whether an answer addresses a question. " + INSTRUCTIONS,
            quote("QUESTION", question),
            quote("ANSWER", answer),
            RELEVANT_Q,
        ]
    )


def context_prompt(question: str, passage: str) -> str:
    return "\n\n".join(
        [
            "You check whether a passage helps to answer a question. " + INSTRUCTIONS,
            quote("QUESTION", question),
            quote("PASSAGE", passage),
            CONTEXT_Q,
        ]
    )


def recall_prompt(statement: str, contexts: Sequence[str], question: str = "") -> str:
    head = [
        "You check statements from a reference answer to a question against passages. " + INSTRUCTIONS,
        quote("QUESTION", question),
    ]
    return "\n\n".join([*head, _passages(contexts), quote("STATEMENT", statement), RECALL_Q])


def yes_probabilities(backend: ChatBackend, prompts: Sequence[str]) -> list[float]:
    """P(yes) for each prompt from the option log-probs (batched when the backend can)."""
    convos = [[{"role": "user", "content": p}] for p in prompts]
    many = getattr(backend, "option_logprobs_many", None)
    lps = many(convos, YES_NO) if many is not None else [backend.option_logprobs(c, YES_NO) for c in convos]
    return [softmax_options(lp)[0] for lp in lps]


def context_precision(relevances: Sequence[float]) -> float:
    """RAGAS context precision: ``sum_k precision@k * v_k / sum_k v_k`` (0 when nothing is relevant)."""
    total, hits, num = 0.0, 0.0, 0.0
    for k, v in enumerate(relevances, start=1):
        hits += v
        num += (hits / k) * v
        total += v
    return num / total if total > 0 else 0.0


@dataclass
class RagCase:
    """One answered question: the passages it was given and, optionally, the reference answer."""

    question: str
    answer: str
    contexts: list[str]
    reference: str | None = None


def evaluate_rag(backend: ChatBackend, cases: Sequence[RagCase], threshold: float = 0.5) -> list[dict[str, Any]]:
    """Judge every case; one dict of the four measures per case (plus the per-claim verdicts).

    ``*_soft`` values average the judge's P(yes); the headline values count verdicts with
    P(yes) > ``threshold`` (the share of claims the judge calls supported).
    """
    prompts: list[str] = []
    spans: list[dict[str, tuple[int, int]]] = []

    def add(ps: list[str]) -> tuple[int, int]:
        start = len(prompts)
        prompts.extend(ps)
        return start, len(prompts)

    claims_of = []
    for c in cases:
        claims = split_claims(c.answer)
        claims_of.append(claims)
        span = {
            "faithfulness": add([faithfulness_prompt(x, c.contexts, c.question) for x in claims] if c.contexts else []),
            "is_claim": add([claim_prompt(x, c.question) for x in claims]),
            "answer_relevancy": add([relevancy_prompt(c.question, strip_citations(c.answer))]),
            "context_precision": add([context_prompt(c.question, p) for p in c.contexts]),
            "context_recall": add(
                [recall_prompt(x, c.contexts, c.question) for x in split_claims(c.reference)]
                if c.reference and c.contexts
                else []
            ),
        }
        spans.append(span)
    probs = yes_probabilities(backend, prompts) if prompts else []
    out = []
    for c, claims, span in zip(cases, claims_of, spans):
        row: dict[str, Any] = {"question": c.question}
        a, b = span["is_claim"]
        is_claim = probs[a:b]
        for name, (a, b) in span.items():
            ps = probs[a:b]
            if name == "is_claim":
                continue
            if not c.contexts:  # nothing retrieved: no claim is supported, no passage is precise, nothing recalled
                ps = [0.0] * len(claims) if name == "faithfulness" else [0.0] if name != "answer_relevancy" else ps
                if name == "context_recall" and not c.reference:
                    ps = []
            if name == "faithfulness":
                hard = [c > threshold for c in is_claim]
                row[name] = sum(p > threshold for p, h in zip(ps, hard) if h) / sum(hard) if any(hard) else math.nan
                total = sum(is_claim)
                row[name + "_soft"] = sum(p * c for p, c in zip(ps, is_claim)) / total if total > 1e-9 else math.nan
            elif name == "context_precision":
                row[name] = context_precision([float(p > threshold) for p in ps]) if ps else math.nan
                row[name + "_soft"] = context_precision(ps) if ps else math.nan
            else:
                row[name] = sum(p > threshold for p in ps) / len(ps) if ps else math.nan
                row[name + "_soft"] = sum(ps) / len(ps) if ps else math.nan
        fa, fb = span["faithfulness"]
        row["claims"] = [
            {"claim": x, "p_claim": round(k, 6), "p_supported": round(p, 6)}
            for x, p, k in zip(claims, probs[fa:fb] if c.contexts else [0.0] * len(claims), is_claim)
        ]
        out.append(row)
    return out


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    n = len(x)
    if n < 2:
        return math.nan
    mx, my = sum(x) / n, sum(y) / n
    sx = math.sqrt(sum((a - mx) ** 2 for a in x))
    sy = math.sqrt(sum((b - my) ** 2 for b in y))
    if sx == 0 or sy == 0:
        return math.nan
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / (sx * sy)


def judge_error(estimates: Sequence[float], truths: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """How far a judge's measure is from the exact one, over the cases where both are defined.

    ``pearson``: correlation; ``mae``: mean absolute error; ``error_rate``: share of cases where
    the judge and the truth fall on different sides of ``threshold`` (e.g. "faithful" vs not).
    """
    pairs = [(e, t) for e, t in zip(estimates, truths) if not (math.isnan(e) or math.isnan(t))]
    if not pairs:
        return {"n": 0, "pearson": math.nan, "mae": math.nan, "error_rate": math.nan}
    es, ts = [p[0] for p in pairs], [p[1] for p in pairs]
    return {
        "n": len(pairs),
        "pearson": pearson(es, ts),
        "mae": sum(abs(e - t) for e, t in pairs) / len(pairs),
        "error_rate": sum((e >= threshold) != (t >= threshold) for e, t in pairs) / len(pairs),
    }


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean of each measure over the cases where it is defined."""
    out = {}
    for name in METRICS:
        vals = [r[name] for r in rows if not math.isnan(r[name])]
        out[name] = sum(vals) / len(vals) if vals else math.nan
        out[name + "_n"] = len(vals)
    return out
