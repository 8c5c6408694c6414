"""A document collection, a lexical (BM25) index, an optional dense index, and top-k retrieval.

Why these choices:

* **Lexical first.** BM25 (Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and
  Beyond", 2009) needs no model, is exact on names and identifiers (which domain questions are full
  of) and is what dense retrievers are measured against (BEIR, Thakur et al. 2021). We use the
  maintained ``bm25s`` package (Lù, 2024: eager sparse scoring, numpy only) rather than our own
  scorer, with Lucene's BM25 variant and its default ``k1=1.5, b=0.75``.
* **Dense when the user supplies an encoder.** Any Hugging Face encoder folder or an in-process
  ``(model, tokenizer)``; passages and queries are mean-pooled over real tokens and L2-normalised
  (Sentence-BERT, Reimers & Gurevych 2019), and scored by cosine similarity.
* **Hybrid by reciprocal rank fusion** (Cormack et al., SIGIR 2009, k=60) when both exist: it needs
  no score calibration between the two retrievers.

A collection is JSONL / Parquet / a ``datasets`` folder of rows with ``id``, ``text`` and optional
``metadata`` (any other fields are kept as metadata too). An index folder holds ``documents.jsonl``,
the BM25 index (``bm25/``), optionally ``dense.npy`` + ``dense.json``, and ``index.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from alignkit.data.io import DataError, iter_rows, write_records

INDEX_VERSION = 1
RRF_K = 60
_TOKEN = r"(?u)\b\w+\b"  # keeps one-letter words and digits (ids, versions) that the default drops


@dataclass(frozen=True)
class Document:
    """One passage of the collection (``metadata`` travels with every retrieval result)."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "metadata": dict(self.metadata)}


@dataclass(frozen=True)
class Hit:
    """A retrieved passage: its rank (1 = best), the retriever's score and which retriever found it."""

    document: Document
    score: float
    rank: int
    source: str = "bm25"

    @property
    def id(self) -> str:
        return self.document.id

    @property
    def text(self) -> str:
        return self.document.text

    def to_dict(self) -> dict[str, Any]:
        return {**self.document.to_dict(), "score": round(float(self.score), 6), "rank": self.rank, "source": self.source}


def document_from_row(row: dict[str, Any], path: str | Path = "<memory>", line: int | None = None) -> Document:
    """A :class:`Document` from a collection row; a missing id or text is a :class:`DataError`."""
    doc_id, text = row.get("id"), row.get("text")
    if doc_id is None or str(doc_id).strip() == "":
        raise DataError(path, line, "id", f"expected a non-empty passage id, saw {doc_id!r}")
    if not isinstance(text, str) or not text.strip():
        raise DataError(path, line, "text", f"expected a non-empty string, saw {repr(text)[:60]}")
    meta = row.get("metadata") or {}
    if not isinstance(meta, dict):
        raise DataError(path, line, "metadata", f"expected an object, saw {type(meta).__name__}")
    extra = {k: v for k, v in row.items() if k not in ("id", "text", "metadata")}
    return Document(id=str(doc_id), text=text, metadata={**extra, **meta})


def read_collection(path: str | Path) -> list[Document]:
    """Every passage of a collection file; ids must be unique (a repeated id is a :class:`DataError`)."""
    path = Path(path)
    docs: list[Document] = []
    seen: dict[str, int] = {}
    for line, row in iter_rows(path):
        if isinstance(row, DataError):
            raise row
        doc = document_from_row(row, path, line)
        if doc.id in seen:
            raise DataError(
                path, line, "id", f"expected a unique passage id, saw {doc.id!r} again (first on line {seen[doc.id]})"
            )
        seen[doc.id] = line
        docs.append(doc)
    if not docs:
        raise DataError(path, None, None, "expected at least one passage, saw an empty collection")
    return docs


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lowercased word tokens (English stopwords removed), as strings, for BM25."""
    out = bm25s.tokenize(
        list(texts), lower=True, token_pattern=_TOKEN, stopwords="english", return_ids=False, show_progress=False
    )
    return [list(t) for t in out]


class LexicalIndex:
    """BM25 over the collection (``bm25s``, Lucene variant)."""

    def __init__(self, documents: Sequence[Document], k1: float = 1.5, b: float = 0.75) -> None:
        self.documents = list(documents)
        self.k1, self.b = k1, b
        self.bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.bm25.index(tokenize([d.text for d in self.documents]), show_progress=False)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        """For each query, up to ``k`` (document index, score) pairs, best first; zero-score hits dropped."""
        k = min(k, len(self.documents))
        out: list[list[tuple[int, float]]] = []
        for tokens in tokenize(queries):
            if not tokens:  # a query made only of stopwords: nothing to match
                out.append([])
                continue
            idx, scores = self.bm25.retrieve([tokens], k=k, show_progress=False, n_threads=0)
            out.append([(int(i), float(s)) for i, s in zip(idx[0], scores[0]) if s > 0])
        return out

    def save(self, folder: Path) -> None:
        self.bm25.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, documents: Sequence[Document]) -> LexicalIndex:
        self = cls.__new__(cls)
        self.documents = list(documents)
        self.bm25 = bm25s.BM25.load(str(folder), show_progress=False)
        self.k1, self.b = float(self.bm25.k1), float(self.bm25.b)
        return self


Encoder = Callable[[Sequence[str]], np.ndarray]


def mean_pool_encoder(model: Any, tokenizer: Any, batch_size: int = 32, max_length: int = 256) -> Encoder:
    """An encoder from any Hugging Face model: mean of the last hidden states over real tokens, L2-normalised.

    ``model`` may be a base encoder (``AutoModel``) or a causal LM (its last hidden layer is used).
    """
    import torch  # only a dense index needs torch

    def encode(texts: Sequence[str]) -> np.ndarray:
        model.eval()
        device = next(model.parameters()).device
        chunks = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(
                    list(texts[start : start + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
                out = model(**batch, output_hidden_states=True)
                hidden = out.hidden_states[-1] if getattr(out, "hidden_states", None) is not None else out.last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                chunks.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy())
        return np.concatenate(chunks, 0) if chunks else np.zeros((0, 1), dtype=np.float32)

    return encode


def load_encoder(name_or_path: str, allow_download: bool = False, batch_size: int = 32) -> Encoder:
    """A mean-pooling encoder from a local Hugging Face folder (a hub id only with ``allow_download``)."""
    from transformers import AutoModel, AutoTokenizer

    if not allow_download and not Path(name_or_path).exists():
        raise FileNotFoundError(f"encoder '{name_or_path}' is not a local folder; pass --allow-download to fetch it from the hub")
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=not allow_download)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model = AutoModel.from_pretrained(name_or_path, local_files_only=not allow_download)
    return mean_pool_encoder(model, tokenizer, batch_size=batch_size)


class DenseIndex:
    """Normalised passage embeddings; cosine similarity by one matrix product."""

    def __init__(self, embeddings: np.ndarray, encoder: Encoder | None = None, name: str = "") -> None:
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        self.encoder, self.name = encoder, name

    @classmethod
    def build(cls, documents: Sequence[Document], encoder: Encoder, name: str = "") -> DenseIndex:
        return cls(encoder([d.text for d in documents]), encoder, name)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        if self.encoder is None:
            raise ValueError("this dense index was loaded without an encoder; pass the encoder used to build it")
        q = self.encoder(list(queries))
        sims = q @ self.embeddings.T
        k = min(k, self.embeddings.shape[0])
        out = []
        for row in sims:
            top = np.argsort(-row, kind="stable")[:k]
            out.append([(int(i), float(row[i])) for i in top])
        return out


def reciprocal_rank_fusion(rankings: Iterable[list[tuple[int, float]]], k: int, rrf_k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse ranked lists: score(d) = sum over lists of 1 / (rrf_k + rank of d); ties by first appearance."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, (doc, _) in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])[:k]


class Retriever:
    """Top-k passages for a question from the lexical index, the dense one, or both (``mode``)."""

    def __init__(self, documents: Sequence[Document], lexical: LexicalIndex, dense: DenseIndex | None = None) -> None:
        self.documents, self.lexical, self.dense = list(documents), lexical, dense
        self.by_id = {d.id: d for d in self.documents}

    @classmethod
    def build(cls, documents: Sequence[Document], encoder: Encoder | None = None, encoder_name: str = "") -> Retriever:
        docs = list(documents)
        ids = [d.id for d in docs]
        if len(set(ids)) != len(ids):
            raise ValueError("passage ids must be unique")
        dense = DenseIndex.build(docs, encoder, encoder_name) if encoder is not None else None
        return cls(docs, LexicalIndex(docs), dense)

    def retrieve_many(self, queries: Sequence[str], k: int = 3, mode: str = "auto") -> list[list[Hit]]:
        """``mode``: ``bm25``, ``dense``, ``hybrid`` (RRF), or ``auto`` (hybrid when a dense index exists)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if mode == "auto":
            mode = "hybrid" if self.dense is not None else "bm25"
        if mode not in ("bm25", "dense", "hybrid"):
            raise ValueError(f"mode must be bm25, dense, hybrid or auto, got {mode!r}")
        if mode in ("dense", "hybrid") and self.dense is None:
            raise ValueError(f"mode {mode!r} needs a dense index (build the index with an encoder)")
        depth = max(k, 20) if mode == "hybrid" else k
        lexical = self.lexical.search(queries, depth) if mode != "dense" else None
        dense = self.dense.search(queries, depth) if mode != "bm25" and self.dense is not None else None
        out = []
        for i in range(len(queries)):
            if mode == "hybrid" and lexical is not None and dense is not None:
                ranked, source = reciprocal_rank_fusion([lexical[i], dense[i]], k), "hybrid"
            elif mode == "dense" and dense is not None:
                ranked, source = dense[i], "dense"
            else:
                ranked, source = (lexical[i] if lexical is not None else [])[:k], "bm25"
            out.append([Hit(self.documents[j], s, r, source) for r, (j, s) in enumerate(ranked[:k], start=1)])
        return out

    def retrieve(self, query: str, k: int = 3, mode: str = "auto") -> list[Hit]:
        return self.retrieve_many([query], k, mode)[0]

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_records(folder / "documents.jsonl", [d.to_dict() for d in self.documents])
        self.lexical.save(folder / "bm25")
        info: dict[str, Any] = {
            "version": INDEX_VERSION,
            "documents": len(self.documents),
            "bm25": {"k1": self.lexical.k1, "b": self.lexical.b},
        }
        if self.dense is not None:
            np.save(folder / "dense.npy", self.dense.embeddings)
            info["dense"] = {"encoder": self.dense.name, "dim": int(self.dense.embeddings.shape[1])}
        (folder / "index.json").write_text(json.dumps(info, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, encoder: Encoder | None = None) -> Retriever:
        """Load a saved index; pass ``encoder`` (the one it was built with) to search its dense part."""
        folder = Path(folder)
        info_path = folder / "index.json"
        if not info_path.exists():
            raise FileNotFoundError(f"{folder} is not an alignkit RAG index (no index.json); build one with `alignkit rag index`")
        info = json.loads(info_path.read_text())
        docs = read_collection(folder / "documents.jsonl")
        dense = None
        if "dense" in info:
            dense = DenseIndex(np.load(folder / "dense.npy"), encoder, info["dense"].get("encoder", ""))
        return cls(docs, LexicalIndex.load(folder / "bm25", docs), dense)

    @staticmethod
    def encoder_name(folder: str | Path) -> str | None:
        """The encoder a saved index was built with (None: lexical only)."""
        info = json.loads((Path(folder) / "index.json").read_text())
        return info.get("dense", {}).get("encoder")


def safe_id(doc_id: str) -> str:
    """A passage id as it may appear inside a prompt: no brackets, newlines or marker characters."""
    return re.sub(r"[\[\]<>\s]+", "_", doc_id).strip("_") or "passage"
