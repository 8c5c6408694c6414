"""The retrieval-augmented prompt: numbered passages with their ids, then the question.

The model is asked to answer from the passages and to cite the id of each passage it used in
square brackets (the attributed-QA format of Bohnet et al. 2022 and of ALCE, Gao et al. 2023), so a
reviewer (or :mod:`alignkit.rag.evaluate`) can check every claim against its source.

Passages are untrusted text: their whitespace is collapsed to single spaces (a passage cannot
start a line of its own that reads like ``Question:`` or a new passage header) and the id shown is
:func:`~alignkit.rag.index.safe_id` of the real id (no brackets inside an id).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from alignkit.rag.index import Hit, safe_id

DEFAULT_TEMPLATE = "Answer from the passages and cite the passage id.\n{passages}\nQuestion: {question}"
_CITE = re.compile(r"\[([^\[\]\s]{1,120})\]")


def one_line(text: str) -> str:
    return " ".join(text.split())


def format_passages(hits: Sequence[Hit]) -> str:
    return "\n".join(f"[{safe_id(h.id)}] {one_line(h.text)}" for h in hits)


def rag_prompt(question: str, hits: Sequence[Hit], template: str = DEFAULT_TEMPLATE) -> str:
    """The user message for ``question`` with ``hits`` as context (``{passages}``, ``{question}`` in ``template``)."""
    if "{passages}" not in template or "{question}" not in template:
        raise ValueError("a RAG template needs both {passages} and {question}")
    return template.replace("{passages}", format_passages(hits)).replace("{question}", one_line(question))


def cited_ids(answer: str, hits: Sequence[Hit]) -> list[str]:
    """Ids of retrieved passages the answer cites (in order of first citation, each once)."""
    known = {safe_id(h.id): h.id for h in hits}
    out: list[str] = []
    for m in _CITE.finditer(answer):
        real = known.get(m.group(1))
        if real is not None and real not in out:
            out.append(real)
    return out


def strip_citations(answer: str) -> str:
    """The answer without its ``[id]`` citations (what a scorer of the content reads)."""
    return one_line(_CITE.sub(" ", answer))
