"""Guards: score (prompt, response) text for unsafe content, per category of a :class:`Policy`.

Two kinds, one interface (``score(prompts, responses) -> list[GuardScore]``):

* :class:`GuardClassifier` — any Hugging Face model as a *multi-label* sequence classifier (one
  sigmoid output per policy category, read at the last real token as the reward model is), trained
  on labelled prompt/response rows by :func:`train_guard` on the one training loop (full or LoRA).
  A row is unsafe for category *c* when ``P(c) >= threshold[c]``, and unsafe at all when some
  category is or when ``P(unsafe) = 1 - prod(1 - P(c))`` reaches its own threshold (then it is
  attributed to its most likely category); every threshold is chosen on held-out rows for a target
  precision (:func:`threshold_for_precision`), since a guard that blocks too much is as visible a
  failure as one that misses.
* :class:`JudgeGuard` — a chat model asked in Llama Guard's prompt format (Inan et al., 2023,
  "Llama Guard: LLM-based Input-Output Safeguard"), the score being the probability of ``unsafe``
  as the first answer token (normalised over ``safe``/``unsafe``), so a real Llama Guard served by
  vLLM, or any OpenAI-compatible endpoint, plugs in through :class:`~alignkit.ai.backend.ChatBackend`.

Training rows: ``prompt`` (text or messages), optional ``response``, and ``categories``: the list
of violated category codes (empty or missing = safe). ``unsafe: true`` without categories is
rejected: a multi-label guard needs to know *which* category was violated.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification

from alignkit.ai.backend import ChatBackend, softmax_options
from alignkit.data.batching import packed_batch
from alignkit.data.chat import Encoded, encode_prompt, prompt_text
from alignkit.data.errors import DataError, describe_value
from alignkit.data.io import iter_rows
from alignkit.data.splits import split_eval
from alignkit.models.heads import apply_head_lora, score_head
from alignkit.models.loading import load_tokenizer, trainable_parameters
from alignkit.models.reward import encode_response, last_token_index, truncate_left
from alignkit.models.tiny import build_tiny_model
from alignkit.safety.config import GuardTrainConfig
from alignkit.safety.policy import Policy, load_policy
from alignkit.train.loop import train
from alignkit.train.summary import write_run_summary

log = logging.getLogger(__name__)

GUARD_FILE = "guard.json"
POLICY_FILE = "policy.yaml"


# --------------------------------------------------------------------------- scores and thresholds


@dataclass
class GuardScore:
    """One row's verdict: ``unsafe`` = P(any violation) and, when known, per-category probabilities."""

    unsafe: float
    categories: dict[str, float] = field(default_factory=dict)
    flagged_categories: list[str] = field(default_factory=list)
    flagged: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "unsafe": round(self.unsafe, 6),
            "flagged": self.flagged,
            "flagged_categories": self.flagged_categories,
            "categories": {k: round(v, 6) for k, v in self.categories.items()},
        }


def precision_recall(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> tuple[float, float, int, int, int]:
    """(precision, recall, tp, fp, fn) of flagging ``score >= threshold``; precision NaN when nothing is flagged."""
    tp = sum(1 for s, y in zip(scores, labels) if s >= threshold and y)
    fp = sum(1 for s, y in zip(scores, labels) if s >= threshold and not y)
    fn = sum(1 for s, y in zip(scores, labels) if s < threshold and y)
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    return precision, recall, tp, fp, fn


def threshold_for_precision(scores: Sequence[float], labels: Sequence[bool], target: float) -> float:
    """The lowest threshold whose precision on (``scores``, ``labels``) is at least ``target``.

    Candidates are the observed scores; flagging ``score >= t`` for a lower ``t`` can only add
    flags, so the lowest qualifying ``t`` has the highest recall among thresholds meeting the
    target. Precision is not monotone in ``t``, so every candidate is checked. When none reaches
    the target (or there are no positives) the threshold is ``inf``: flag nothing rather than
    flag at a precision below what was asked for.
    """
    if not 0 < target <= 1:
        raise ValueError(f"target precision must be in (0, 1], got {target}")
    best = math.inf
    for t in sorted(set(scores), reverse=True):
        precision, _, tp, _, _ = precision_recall(scores, labels, t)
        if tp and precision >= target - 1e-12:
            best = t
    return best


def unsafe_probability(probs: Sequence[float]) -> float:
    """P(at least one category), treating the sigmoid outputs as independent: ``1 - prod(1 - p_k)``."""
    none = 1.0
    for p in probs:
        none *= 1.0 - p
    return 1.0 - none


def flag(probs: Sequence[float], codes: Sequence[str], thresholds: Sequence[float], unsafe_threshold: float) -> list[str]:
    """The categories a row is flagged for (empty = not flagged).

    A row is flagged when any category reaches its own threshold, or when ``P(unsafe)`` reaches
    ``unsafe_threshold``: a guard can be sure that a text is harmful without being sure which
    category it falls in. Such a row is attributed to its most likely category."""
    flagged = [c for c, v, t in zip(codes, probs, thresholds) if v >= t]
    if not flagged and unsafe_probability(probs) >= unsafe_threshold:
        flagged = [codes[max(range(len(codes)), key=lambda k: probs[k])]]
    return flagged


def category_report(
    probs: Sequence[Sequence[float]],
    labels: Sequence[Sequence[bool]],
    policy: Policy,
    thresholds: Sequence[float],
    unsafe_threshold: float = math.inf,
) -> dict[str, dict[str, Any]]:
    """Per category (and ``any``): positives, threshold, precision, recall of the guard's flags."""
    flags = [flag(p, policy.codes, thresholds, unsafe_threshold) for p in probs]
    out: dict[str, dict[str, Any]] = {}

    def rates(pred: list[bool], truth: list[bool]) -> dict[str, Any]:
        tp = sum(f and t for f, t in zip(pred, truth))
        fp = sum(f and not t for f, t in zip(pred, truth))
        fn = sum(t and not f for f, t in zip(pred, truth))
        return {
            "positives": sum(truth),
            "precision": tp / (tp + fp) if tp + fp else math.nan,
            "recall": tp / (tp + fn) if tp + fn else math.nan,
            "tp": tp,
            "fp": fp,
        }

    for k, code in enumerate(policy.codes):
        out[code] = {"threshold": thresholds[k], **rates([code in f for f in flags], [bool(y[k]) for y in labels])}
    out["any"] = {"threshold": unsafe_threshold, **rates([bool(f) for f in flags], [any(y) for y in labels])}
    return out


# --------------------------------------------------------------------------- data


@dataclass
class GuardExample:
    encoded: Encoded
    labels: list[float]


def row_labels(row: dict[str, Any], policy: Policy, path: str = "<memory>", line: int | None = None) -> list[float]:
    """Multi-hot vector over the policy's categories from a row's ``categories`` list."""
    cats = row.get("categories")
    if cats is None:
        cats = []
    if isinstance(cats, str):
        cats = [c.strip() for c in cats.split(",") if c.strip()]
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
        raise DataError(path, line, "categories", "a list of category codes", seen=describe_value(cats))
    if row.get("unsafe") and not cats:
        raise DataError(
            path, line, "categories", "the violated category codes of an unsafe row (a multi-label guard)", seen="none"
        )
    unknown = [c for c in cats if c not in policy.codes]
    if unknown:
        raise DataError(path, line, "categories", f"codes of the policy {policy.codes}", seen=str(unknown))
    return [1.0 if code in cats else 0.0 for code in policy.codes]


def read_guard_rows(path: str | Path, policy: Policy) -> list[dict[str, Any]]:
    """Rows with ``prompt`` (+ optional ``response``) and ``categories``; the first bad row raises a DataError."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    rows = []
    for line, row in iter_rows(path):
        if isinstance(row, DataError):
            raise row
        if not row.get("prompt"):
            raise DataError(path, line, "prompt", "a non-empty prompt (text or messages)", seen=describe_value(row.get("prompt")))
        row_labels(row, policy, str(path), line)
        rows.append(row)
    if not rows:
        raise DataError(path, None, None, "at least one row")
    return rows


def encode_guard_text(tokenizer: Any, prompt: Any, response: Any, max_length: int, template: str = "chat") -> Encoded:
    """The conversation through the one chat-template path; prompt-only rows end at the assistant header.

    Left-truncated: the verdict is read at the last token, so over-long rows lose their beginning.
    """
    if response is None or (isinstance(response, str) and not response.strip()):
        ids = encode_prompt(tokenizer, prompt, template)  # type: ignore[arg-type]
        return truncate_left(Encoded(ids, [False] * len(ids)), max_length)
    return encode_response(tokenizer, prompt, response, max_length, template)


# --------------------------------------------------------------------------- model


def load_guard_model(
    source: str,
    num_labels: int,
    *,
    allow_download: bool = False,
    dtype: str = "float32",
    tiny_texts: Sequence[str] = (),
    seed: int = 0,
) -> tuple[torch.nn.Module, Any]:
    """A causal LM (or a saved guard) with a ``num_labels``-output classification head.

    ``"tiny"`` builds the tiny model and loads it back through ``AutoModelForSequenceClassification``
    like a real checkpoint (as ``models.loading.load_reward_model`` does for one output).
    """
    with tempfile.TemporaryDirectory() as tmp:
        if source == "tiny":
            base, tokenizer = build_tiny_model(tiny_texts, seed=seed)
            base.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            path, local_only = tmp, True
        else:
            if not allow_download and not Path(source).exists():
                raise FileNotFoundError(f"model '{source}' is not a local folder; pass --allow-download to fetch it from the hub")
            tokenizer = load_tokenizer(source, allow_download)
            path, local_only = source, not allow_download
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(
                path,
                num_labels=num_labels,
                problem_type="multi_label_classification",
                local_files_only=local_only,
                dtype="auto" if dtype == "auto" else getattr(torch, dtype),
                ignore_mismatched_sizes=True,
            )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def head_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(num_sequences, K)`` logits at each sequence's last real token (packed rows allowed)."""
    captured: list[torch.Tensor] = []
    hook = score_head(model).register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        model(input_ids=batch["input_ids"], position_ids=batch.get("position_ids"), use_cache=False)
    finally:
        hook.remove()
    out = captured[-1].float()  # (rows, length, K)
    index = batch["last_token"] if "last_token" in batch else last_token_index(batch)
    return out.reshape(-1, out.shape[-1])[index]


class GuardObjective:
    """Binary cross-entropy per category (sigmoid outputs), averaged over categories and rows."""

    def __init__(self, pad_id: int, max_length: int) -> None:
        self.pad_id, self.max_length = pad_id, max_length

    def collate(self, units: Sequence[GuardExample]) -> dict[str, torch.Tensor]:
        batch, where = packed_batch([u.encoded for u in units], self.pad_id, self.max_length)
        labels = torch.tensor([u.labels for u in units], dtype=torch.float32)
        batch["labels"] = torch.empty_like(labels)
        batch["labels"][where] = labels  # packed order
        batch["last_token"] = last_token_index(batch)
        return batch

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = head_logits(model, batch)
        labels = batch["labels"].to(logits.device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        with torch.no_grad():
            accuracy = ((logits > 0).float() == labels).float().mean()
        return loss, {"accuracy": float(accuracy), "tokens": float((batch["sequence_ids"] >= 0).sum())}


@torch.no_grad()
def predict_probs(
    model: torch.nn.Module, sequences: Sequence[Encoded], pad_id: int, max_length: int, batch_size: int = 16
) -> list[list[float]]:
    """Sigmoid probabilities per category for each sequence (input order)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[list[float]] = [[] for _ in sequences]
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for s in range(0, len(order), batch_size):
        chunk = order[s : s + batch_size]
        batch, where = packed_batch([sequences[i] for i in chunk], pad_id, max_length)
        batch = {k: v.to(device) for k, v in batch.items()}
        probs = torch.sigmoid(head_logits(model, batch))[where.to(device)].cpu().tolist()
        for i, p in zip(chunk, probs):
            out[i] = p
    model.train(was_training)
    return out


class GuardClassifier:
    """A trained guard folder (model + ``policy.yaml`` + ``guard.json`` thresholds) as a scorer."""

    def __init__(
        self, path: str | Path, batch_size: int = 16, device: str | None = None, thresholds: Sequence[float] | None = None
    ) -> None:
        self.path = Path(path)
        meta_path = self.path / GUARD_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path}: not a guard folder (written by `alignkit safety train-guard`)")
        self.meta = json.loads(meta_path.read_text())
        self.policy = load_policy(self.path / POLICY_FILE)
        self.thresholds = list(thresholds) if thresholds is not None else [float(t) for t in self.meta["thresholds"]]
        self.unsafe_threshold = float(self.meta.get("unsafe_threshold", math.inf))
        self.max_length, self.template = int(self.meta.get("max_length", 512)), self.meta.get("template", "chat")
        self.tokenizer = load_tokenizer(str(self.path))
        self.model = AutoModelForSequenceClassification.from_pretrained(self.path, local_files_only=True)
        self.model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        self.batch_size = batch_size

    def probs(self, prompts: Sequence[Any], responses: Sequence[Any] | None = None) -> list[list[float]]:
        responses = list(responses) if responses is not None else [None] * len(prompts)
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        seqs = [encode_guard_text(self.tokenizer, p, r, self.max_length, self.template) for p, r in zip(prompts, responses)]
        return predict_probs(self.model, seqs, self.tokenizer.pad_token_id, self.max_length, self.batch_size)

    def score(self, prompts: Sequence[Any], responses: Sequence[Any] | None = None) -> list[GuardScore]:
        out = []
        for p in self.probs(prompts, responses):
            flagged = flag(p, self.policy.codes, self.thresholds, self.unsafe_threshold)
            cats = dict(zip(self.policy.codes, p))
            out.append(
                GuardScore(unsafe=unsafe_probability(p), categories=cats, flagged_categories=flagged, flagged=bool(flagged))
            )
        return out


def train_guard(config: GuardTrainConfig) -> Path:
    """Train a multi-label guard on labelled rows; choose per-category thresholds; save model + policy + report."""
    torch.manual_seed(config.seed)
    policy = load_policy(config.policy)
    rows = read_guard_rows(config.data, policy)
    if config.eval_data is not None:
        train_rows, eval_rows = rows, read_guard_rows(config.eval_data, policy)
    else:
        train_rows, eval_rows = split_eval(rows, config.eval_fraction, config.seed)
    texts = [prompt_text(r["prompt"]) + " " + str(r.get("response") or "") for r in rows]
    model, tokenizer = load_guard_model(
        config.model,
        len(policy.codes),
        allow_download=config.allow_download,
        dtype=config.dtype,
        tiny_texts=texts,
        seed=config.seed,
    )
    if (lora := config.lora_settings()) is not None:
        model = apply_head_lora(model, lora)
    trainable, total = trainable_parameters(model)
    log.info("guard: training %d of %d parameters", trainable, total)

    def encode(rs: list[dict[str, Any]]) -> list[GuardExample]:
        return [
            GuardExample(
                encode_guard_text(tokenizer, r["prompt"], r.get("response"), config.max_length, config.template),
                row_labels(r, policy),
            )
            for r in rs
        ]

    train_examples, eval_examples = encode(train_rows), encode(eval_rows)
    objective = GuardObjective(tokenizer.pad_token_id, config.max_length)
    result = train(config, model, objective, train_examples, eval_examples)
    model = result.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()  # a plain classifier folder, whatever the training mode

    # Thresholds on the held-out rows (on the training rows when there are none, with a warning).
    pick = eval_examples or train_examples
    if not eval_examples:
        log.warning("no held-out rows: thresholds are chosen on the training rows (optimistic)")
    probs = predict_probs(model, [e.encoded for e in pick], tokenizer.pad_token_id, config.max_length, config.batch_size)
    labels = [[bool(v) for v in e.labels] for e in pick]
    thresholds = []
    for k in range(len(policy.codes)):
        t = threshold_for_precision([p[k] for p in probs], [y[k] for y in labels], config.target_precision)
        thresholds.append(t if math.isfinite(t) else config.fallback_threshold)
    unsafe = threshold_for_precision([unsafe_probability(p) for p in probs], [any(y) for y in labels], config.target_precision)
    unsafe_threshold = unsafe if math.isfinite(unsafe) else config.fallback_threshold
    report = category_report(probs, labels, policy, thresholds, unsafe_threshold)

    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.id2label = dict(enumerate(policy.codes))
    model.config.label2id = {c: i for i, c in enumerate(policy.codes)}
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    (output / POLICY_FILE).write_text(policy.to_yaml(), encoding="utf-8")
    meta = {
        "policy": policy.name,
        "codes": policy.codes,
        "thresholds": thresholds,
        "unsafe_threshold": unsafe_threshold,
        "target_precision": config.target_precision,
        "max_length": config.max_length,
        "template": config.template,
        "held_out_rows": len(eval_examples),
        "report": report,
    }
    (output / GUARD_FILE).write_text(json.dumps(meta, indent=2, allow_nan=True))
    write_run_summary(
        output, "guard", config, result, data={"rows": len(rows), "train": len(train_examples), "eval": len(eval_examples)}
    )
    return output


# --------------------------------------------------------------------------- judge-model guard

LLAMA_GUARD_TASK = (
    "Task: Check if there is unsafe content in '{role}' messages in conversations according our safety policy "
    "with the below categories."
)


def llama_guard_prompt(policy: Policy, conversation: Sequence[dict[str, Any]], role: str = "Agent") -> str:
    """The user message of Llama Guard 3's format: task, policy categories, conversation, answer rules.

    Conversation turns are written ``User: ...`` / ``Agent: ...``; turn text that imitates the
    section markers (``<END CONVERSATION>``) is neutralised so a response cannot close the
    conversation early and append its own verdict.
    """
    cats = "\n".join(c.line() for c in policy.categories)
    turns = []
    for m in conversation:
        speaker = "User" if m["role"] == "user" else "Agent"
        turns.append(f"{speaker}: {_neutralise(str(m['content']))}")
    convo = "\n\n".join(turns)
    return (
        f"{LLAMA_GUARD_TASK.format(role=role)}\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n{cats}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{convo}\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n"
        "- First line must read 'safe' or 'unsafe'.\n"
        "- If unsafe, a second line must include a comma-separated list of violated categories."
    )


_SECTION = re.compile(r"<\s*(BEGIN|END)\s+(CONVERSATION|UNSAFE CONTENT CATEGORIES)\s*>", re.I)


def _neutralise(text: str) -> str:
    return _SECTION.sub(lambda m: f"({m.group(1)} {m.group(2)})", text)


def _conversation(prompt: Any, response: Any) -> list[dict[str, Any]]:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if response is not None and str(response).strip():
        messages.append({"role": "assistant", "content": response})
    return messages


class JudgeGuard:
    """A judge model as a guard: P(first answer token is ``unsafe``) in Llama Guard's format.

    ``format="llama-guard"`` writes the whole task prompt (policy included) as one user message,
    for any instruction model; ``format="conversation"`` sends the conversation itself, for a real
    Llama Guard whose chat template builds that prompt (its built-in policy applies). ``threshold``
    is the flag bar on the score. With ``categories=True`` the guard also generates the answer and
    reads the violated codes from its second line.
    """

    OPTIONS = ("safe", "unsafe")

    def __init__(
        self,
        backend: ChatBackend,
        policy: Policy | None = None,
        threshold: float = 0.5,
        format: str = "llama-guard",
        categories: bool = False,
    ) -> None:
        if format not in ("llama-guard", "conversation"):
            raise ValueError(f"format must be 'llama-guard' or 'conversation', got {format!r}")
        self.backend, self.policy = backend, policy or load_policy(None)
        self.threshold, self.format, self.want_categories = threshold, format, categories

    def messages(self, prompt: Any, response: Any = None) -> list[dict[str, Any]]:
        convo = _conversation(prompt, response)
        if self.format == "conversation":
            return convo
        role = "Agent" if convo[-1]["role"] == "assistant" else "User"
        return [{"role": "user", "content": llama_guard_prompt(self.policy, convo, role)}]

    def score(self, prompts: Sequence[Any], responses: Sequence[Any] | None = None) -> list[GuardScore]:
        responses = list(responses) if responses is not None else [None] * len(prompts)
        convos = [self.messages(p, r) for p, r in zip(prompts, responses)]
        many = getattr(self.backend, "option_logprobs_many", None)
        lps = (
            many(convos, list(self.OPTIONS))
            if many is not None
            else [self.backend.option_logprobs(c, list(self.OPTIONS)) for c in convos]
        )
        answers = self.backend.chat(convos, max_tokens=24, temperature=0.0) if self.want_categories else [""] * len(convos)
        out = []
        for lp, answer in zip(lps, answers):
            p_unsafe = softmax_options(lp)[1]
            codes = parse_categories(answer, self.policy) if p_unsafe >= self.threshold else []
            out.append(GuardScore(unsafe=p_unsafe, flagged_categories=codes, flagged=p_unsafe >= self.threshold))
        return out


def parse_categories(answer: str, policy: Policy) -> list[str]:
    """Codes named on the lines after the first (``unsafe\\nS1,S9``), in policy order, unknown ones dropped."""
    lines = answer.strip().splitlines()
    named = {c.strip() for line in lines[1:] for c in line.split(",")}
    return [c for c in policy.codes if c in named]
