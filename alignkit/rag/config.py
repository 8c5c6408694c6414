"""Configs of ``alignkit rag index`` and ``alignkit rag ask`` (torch-free, for the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alignkit.ai.config import BackendSettings


class RagIndexConfig(BaseModel):
    """Index a document collection for retrieval."""

    model_config = ConfigDict(extra="forbid")
    collection: Path | None = Field(
        None, description="Collection: .jsonl/.parquet/datasets folder with id, text (, metadata). Default: --sandbox-seed's KB."
    )
    sandbox_seed: int | None = Field(None, description="Index the sandbox world of this seed (its knowledge base documents).")
    output: Path = Field(description="Index folder to write (documents.jsonl, bm25/, dense.npy, index.json).")
    encoder: str | None = Field(None, description="Hugging Face encoder folder for a dense index as well (mean pooling).")
    allow_download: bool = Field(False, description="Allow fetching the encoder from the Hugging Face hub.")


class RagAskConfig(BackendSettings):
    """Answer questions with retrieval: top-k passages, a citing prompt, a local model or an endpoint."""

    index: Path = Field(description="Index folder from `alignkit rag index`.")
    questions: Path = Field(description="Questions: JSONL with a 'question' (or 'prompt') field, or .txt one per line.")
    output: Path = Field(description="JSONL of answers: question, answer, passages (id, text, score), cited ids.")
    k: int = Field(3, ge=1, le=100, description="Passages retrieved per question.")
    mode: Literal["auto", "bm25", "dense", "hybrid"] = Field(
        "auto", description="Retriever (auto: hybrid if the index has a dense part)."
    )
    encoder: str | None = Field(None, description="Encoder folder for a dense index (default: the one the index was built with).")
    template: str | None = Field(None, description="Prompt template with {passages} and {question} (default: the citing one).")
    no_retrieval: bool = Field(False, description="Ask without passages (the no-RAG baseline of the same run).")
    max_tokens: int = Field(64, ge=1, description="Max tokens per answer.")
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature (0 = greedy).")
    seed: int = 0
