"""Train the sandbox's tiny *unaligned* base model with the project's own loop.

The base model is what alignment starts from: it has read a chat corpus in which harmful requests
are often answered, unknown entities get made-up facts and some answers are rude (rates set by
:class:`~alignkit.sandbox.datasets.BaseCorpusConfig`). A checkpoint built by this module ships in
the package (``alignkit/sandbox/base_model``), so the demo does not retrain it; rebuilding it from
the same seed on the same torch build reproduces it (the loop is deterministic given the seed).

    alignkit sandbox pretrain --output alignkit/sandbox/base_model
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from alignkit.data.io import write_records
from alignkit.data.records import record_texts
from alignkit.models.tiny import build_tiny_model
from alignkit.sandbox.config import SHIPPED_BASE_MODEL, PretrainConfig
from alignkit.sandbox.datasets import BaseCorpusConfig, base_corpus, sft_demos
from alignkit.sandbox.world import build_world
from alignkit.train.config import SFTConfig
from alignkit.train.loop import train
from alignkit.train.sft import SFTObjective, encode_all, make_units

log = logging.getLogger(__name__)

__all__ = ["SHIPPED_BASE_MODEL", "PretrainConfig", "pretrain_base_model"]


def pretrain_base_model(config: PretrainConfig) -> Path:
    """Build the corpus, train the tiny model on it, save it with a provenance file."""
    world = build_world(config.world_seed)
    rates = BaseCorpusConfig()
    corpus = base_corpus(world, config.corpus_size, rates, seed=config.seed)
    # The tokenizer sees every prompt of every split and the good demonstrations too, so later
    # stages (SFT, evaluation) never meet text it splits into raw bytes.
    vocab_texts = record_texts(corpus) + [p.text for s in ("train", "eval", "test") for p in world.prompts(s)]
    vocab_texts += record_texts(sft_demos(world, seed=config.seed))
    model, tokenizer = build_tiny_model(
        vocab_texts,
        seed=config.seed,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        intermediate_size=int(config.hidden_size * 2.6875),
    )
    encoded, too_long = encode_all(tokenizer, corpus, config.max_length, "chat")
    with tempfile.TemporaryDirectory() as scratch:
        train_config = SFTConfig(
            model="tiny",
            data=Path(scratch) / "corpus.jsonl",
            output=Path(scratch) / "run",
            max_steps=config.max_steps,
            batch_size=config.batch_size,
            lr=config.lr,
            warmup_steps=50,
            lr_schedule="cosine",
            packing=True,
            max_length=config.max_length,
            seed=config.seed,
            save_every=10**9,
            progress=config.progress,
            weight_decay=0.01,
        )
        result = train(train_config, model, SFTObjective(tokenizer.pad_token_id), make_units(encoded, True, config.max_length))
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    result.model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    write_records(output / "corpus_sample.jsonl", corpus[:50])
    (output / "alignkit_base_model.json").write_text(
        json.dumps(
            {
                "what": "alignkit sandbox base model: tiny Llama pretrained on the unaligned sandbox corpus",
                "config": json.loads(config.model_dump_json()),
                "corpus_rates": rates.model_dump(),
                "corpus_records": len(corpus),
                "skipped_too_long": too_long,
                "final_loss": result.history[-1]["loss"],
                "parameters": sum(p.numel() for p in result.model.parameters()),
            },
            indent=2,
        )
    )
    log.info("base model saved to %s (final loss %.3f)", output, result.history[-1]["loss"])
    return output
