"""Generation with retrieval: retrieve top-k, build the citing prompt, ask any chat backend.

The generator is a :class:`~alignkit.ai.backend.ChatBackend`, so the same call serves a local model
(``LocalBackend``: batched sampling through ``alignkit.models.generation``) and any
OpenAI-compatible endpoint (``OpenAIBackend``: vLLM, TGI, ``alignkit serve``, hosted APIs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.ai.backend import ChatBackend
from alignkit.ai.runner import make_backend
from alignkit.data.io import DataError, read_jsonl_objects, write_records
from alignkit.plugins import load_object
from alignkit.rag.config import RagAskConfig, RagIndexConfig
from alignkit.rag.index import Encoder, Hit, Retriever, load_encoder, read_collection
from alignkit.rag.prompt import DEFAULT_TEMPLATE, cited_ids, rag_prompt

SANDBOX_COLLECTION = "alignkit.sandbox.knowledge:collection"  # a plug-in by name: the library never imports the sandbox


@dataclass
class RagAnswer:
    question: str
    prompt: str
    answer: str
    hits: list[Hit] = field(default_factory=list)

    @property
    def cited(self) -> list[str]:
        return cited_ids(self.answer, self.hits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "prompt": self.prompt,
            "answer": self.answer,
            "passages": [h.to_dict() for h in self.hits],
            "contexts": [h.text for h in self.hits],
            "cited": self.cited,
        }


def answer_questions(
    backend: ChatBackend,
    questions: Sequence[str],
    retriever: Retriever | None,
    k: int = 3,
    mode: str = "auto",
    template: str = DEFAULT_TEMPLATE,
    max_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[RagAnswer]:
    """Answer every question; with ``retriever=None`` the question is asked bare (the no-RAG baseline)."""
    hits = retriever.retrieve_many(questions, k=k, mode=mode) if retriever is not None else [[] for _ in questions]
    prompts = [rag_prompt(q, h, template) if retriever is not None else q for q, h in zip(questions, hits)]
    answers = backend.chat(
        [[{"role": "user", "content": p}] for p in prompts], max_tokens=max_tokens, temperature=temperature, seed=seed
    )
    return [RagAnswer(q, p, a, h) for q, p, a, h in zip(questions, prompts, answers, hits)]


def read_questions(path: Path) -> list[dict[str, Any]]:
    """Question rows: ``.txt`` one per line, or JSONL objects with ``question`` (or ``prompt``); other fields ride along."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        return [{"question": line.strip()} for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for line, row in read_jsonl_objects(path):
        q = row.get("question", row.get("prompt"))
        if not isinstance(q, str) or not q.strip():
            raise DataError(path, line, "question", f"expected a non-empty string in 'question' or 'prompt', saw {q!r}")
        rows.append({**row, "question": q})
    return rows


def run_index(config: RagIndexConfig) -> Path:
    """``alignkit rag index``: read the collection (or the sandbox KB), build and save the index."""
    if config.collection is not None:
        docs = read_collection(config.collection)
    elif config.sandbox_seed is not None:
        docs = load_object(SANDBOX_COLLECTION, what="sandbox collection")(config.sandbox_seed)
    else:
        raise ValueError("give --collection FILE or --sandbox-seed N")
    encoder: Encoder | None = load_encoder(config.encoder, config.allow_download) if config.encoder else None
    retriever = Retriever.build(docs, encoder, encoder_name=config.encoder or "")
    return retriever.save(config.output)


def run_ask(config: RagAskConfig) -> dict[str, Any]:
    """``alignkit rag ask``: answer a question file with retrieval, write one JSON line per answer."""
    rows = read_questions(config.questions)
    encoder_name = config.encoder or Retriever.encoder_name(config.index)
    encoder = load_encoder(encoder_name, config.allow_download) if encoder_name and config.mode != "bm25" else None
    retriever = Retriever.load(config.index, encoder)
    mode = "bm25" if encoder is None and config.mode == "auto" else config.mode
    backend = make_backend(config, config.output.with_name(config.output.name + ".cache"))
    answers = answer_questions(
        backend,
        [r["question"] for r in rows],
        None if config.no_retrieval else retriever,
        k=config.k,
        mode=mode,
        template=config.template or DEFAULT_TEMPLATE,
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        seed=config.seed,
    )
    extra = [{k: v for k, v in r.items() if k not in ("question", "prompt")} for r in rows]
    write_records(config.output, [{**e, **a.to_dict()} for e, a in zip(extra, answers)])
    (config.output.with_name(config.output.stem + ".config.json")).write_text(
        json.dumps(config.model_dump(mode="json"), indent=2)
    )
    return {"answers": len(answers), "output": str(config.output), "cited": sum(bool(a.cited) for a in answers)}
