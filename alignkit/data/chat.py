"""The one path from records to token ids with a loss mask.

Every trainer (SFT, reward model, DPO, KTO, RL) and the generator turn text into tokens here, so
chat-template handling, masking and special tokens are decided once.

How the mask is found: the conversation is rendered with the tokenizer's chat template (or
:data:`DEFAULT_CHAT_TEMPLATE` when it has none) and tokenized *once*, with character offsets. Each
assistant turn's character span is found by rendering the conversation up to that turn with the
generation prompt (its start) and through that turn (its end). Tokens that start inside an
assistant span are trained on; everything else is context. Tokenizing once avoids the
token-merge artefacts of tokenizing turns separately.

Only the completion is trained on: in a prompt/completion pair whose prompt is a conversation
with earlier assistant turns (HH-RLHF, multi-turn DPO), those turns are context, as in TRL.

Special tokens: a chat template writes its own BOS/EOS text, so the rendered string is tokenized
with ``add_special_tokens=False``; tokenizing it with special tokens on is the classic double-BOS
bug. In ``raw`` mode (no template) we add BOS once (if the tokenizer has one) and EOS once.

Templates that refuse a system message (Gemma's raises "System role not supported"): the system
text is merged into the next user turn (``system + "\n\n" + user``), which is what those
models' own documentation recommends; it is logged once per template. Thinking-style templates
(Qwen3) render an assistant turn with its ``<think>`` block only while it is the last turn and
drop the block once the turn is history, so a conversation's first turns are not a prefix of the
whole. For those, each conversation is trained on its last assistant turn exactly as the template
renders a finished turn (``<think>…</think>`` included), earlier turns being context as the
template renders history; logged once per template. A template that is not even stable for
one turn is refused with what to pass instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from jinja2.exceptions import TemplateError

log = logging.getLogger(__name__)

TemplateMode = Literal["chat", "raw"]

# Documented default for tokenizers without a template (our tiny models use it too):
#   <|bos|><|system|>\n...<|end|>\n<|user|>\n...<|end|>\n<|assistant|>\n...<|end|>\n
# The assistant turn ends with the EOS token (<|end|> for tiny models), so generation stops there.
DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


class TooLongError(ValueError):
    """The prompt alone fills ``max_length``: no completion token would be left to learn from."""


@dataclass
class Encoded:
    """Token ids of one sequence and which of them are training targets (completion tokens)."""

    input_ids: list[int]
    loss_mask: list[bool]

    def __len__(self) -> int:
        return len(self.input_ids)


def to_messages(prompt: str | list[dict[str, Any]], completion: str | list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Turn TRL-style prompt/completion (strings or message lists) into one message list."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if completion is not None:
        if isinstance(completion, str):
            messages.append({"role": "assistant", "content": completion})
        else:
            messages.extend(dict(m) for m in completion)
    return messages


def ensure_chat_template(tokenizer: Any) -> None:
    """Give a tokenizer without a chat template the documented default, so every model can chat."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE


# Templates (by their text) seen to refuse system messages, and seen not to be prefix-stable: each is logged once.
_MERGES_SYSTEM: set[str] = set()
_FINAL_TURN_ONLY: set[str] = set()


def merge_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """System messages folded into the next user turn (``system + "\n\n" + user``), for templates that refuse them."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []
    for m in messages:
        if m["role"] == "system":
            pending.append(str(m["content"]))
        elif m["role"] == "user" and pending:
            out.append({**m, "content": "\n\n".join([*pending, str(m["content"])])})
            pending = []
        else:
            out.append(m)
    if pending:
        out.append({"role": "user", "content": "\n\n".join(pending)})
    return out


def render(tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
    """The conversation as the model sees it (system merged into the first user turn if the template refuses it)."""
    ensure_chat_template(tokenizer)
    template = str(tokenizer.chat_template)
    msgs: list[dict[str, Any]] = [{k: m[k] for k in ("role", "content", "reasoning_content") if k in m} for m in messages]
    if template in _MERGES_SYSTEM:
        msgs = merge_system(msgs)
    try:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)
    except TemplateError:
        if not any(m["role"] == "system" for m in msgs):
            raise
        text = tokenizer.apply_chat_template(merge_system(msgs), tokenize=False, add_generation_prompt=add_generation_prompt)
    _MERGES_SYSTEM.add(template)
    log.warning("the chat template refuses system messages; merging each into the next user turn (system + blank line + user)")
    return text


def _assistant_spans(tokenizer: Any, messages: list[dict[str, Any]], full: str, context: int) -> list[tuple[int, int]] | None:
    """Character spans of the assistant turns at index ``>= context``; None if the template is not prefix-stable."""
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or i < context:
            continue
        start_text = render(tokenizer, messages[:i], add_generation_prompt=True)
        end_text = render(tokenizer, messages[: i + 1])
        if not full.startswith(start_text) or not full.startswith(end_text):
            return None
        spans.append((len(start_text), len(end_text)))
    return spans


def _final_turn(tokenizer: Any, messages: list[dict[str, Any]], context: int) -> tuple[str, list[tuple[int, int]]]:
    """The conversation through its last assistant turn, with that turn rendered as a finished turn (thinking templates)."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    start_text = render(tokenizer, messages[:last], add_generation_prompt=True) if last >= context else ""
    end_text = render(tokenizer, messages[: last + 1]) if last >= context else ""
    if last < context or not end_text.startswith(start_text):
        raise ValueError(
            "the tokenizer's chat template renders an assistant turn differently from its own generation prompt "
            "(rendering the conversation up to the reply with add_generation_prompt=True is not a prefix of the "
            "conversation with the reply), so the reply's tokens cannot be located; pass --template raw to train on "
            "plain prompt+completion text, or save the model with a training chat template (tokenizer.chat_template) "
            "whose generation prompt starts every assistant turn"
        )
    template = str(tokenizer.chat_template)
    if template not in _FINAL_TURN_ONLY:
        _FINAL_TURN_ONLY.add(template)
        log.warning(
            "the chat template renders finished and historical assistant turns differently (thinking-style, e.g. Qwen3): "
            "each conversation trains on its last assistant turn as the template renders a finished turn; earlier "
            "assistant turns are context (split a conversation into one record per turn to train on each)"
        )
    return end_text, [(len(start_text), len(end_text))]


def encode_messages(tokenizer: Any, messages: list[dict[str, Any]], max_length: int | None = None, context: int = 0) -> Encoded:
    """Tokenize a conversation; assistant turns (content and end-of-turn tokens) are the targets.

    The first ``context`` messages are never targets (a prompt's own assistant turns).
    """
    full = render(tokenizer, messages)
    spans = _assistant_spans(tokenizer, messages, full, context)
    if spans is None:
        full, spans = _final_turn(tokenizer, messages, context)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    mask = [any(s <= start < e for s, e in spans) for start, _ in offsets]
    return _finish(ids, mask, max_length)


def encode_raw(tokenizer: Any, prompt: str, completion: str, max_length: int | None = None) -> Encoded:
    """Plain text continuation (base-model style): BOS + prompt + completion + EOS, each once."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None and prompt_ids[:1] != [tokenizer.bos_token_id]:
        prompt_ids = [tokenizer.bos_token_id] + prompt_ids
    if tokenizer.eos_token_id is not None and completion_ids[-1:] != [tokenizer.eos_token_id]:
        completion_ids = completion_ids + [tokenizer.eos_token_id]
    ids = prompt_ids + completion_ids
    return _finish(ids, [False] * len(prompt_ids) + [True] * len(completion_ids), max_length)


def _finish(ids: list[int], mask: list[bool], max_length: int | None) -> Encoded:
    # The first token has no left context, so it can never be a target; forcing this also keeps
    # packed sequences from learning across their boundary.
    if mask:
        mask[0] = False
    if max_length is not None and len(ids) > max_length:
        ids, mask = ids[:max_length], mask[:max_length]
    if not any(mask):
        raise TooLongError(f"no completion tokens within max_length={max_length} (sequence has {len(ids)}+ tokens)")
    return Encoded(ids, mask)


def encode_example(
    tokenizer: Any,
    prompt: str | list[dict[str, Any]],
    completion: str | list[dict[str, Any]],
    max_length: int | None = None,
    template: TemplateMode = "chat",
) -> Encoded:
    """Encode a prompt/completion pair (used by SFT, reward models, DPO and KTO alike)."""
    if template == "raw":
        if not (isinstance(prompt, str) and isinstance(completion, str)):
            raise ValueError("template='raw' needs plain-string prompt and completion")
        return encode_raw(tokenizer, prompt, completion, max_length)
    context = 1 if isinstance(prompt, str) else len(prompt)
    return encode_messages(tokenizer, to_messages(prompt, completion), max_length, context=context)


def encode_sft_record(
    tokenizer: Any, record: dict[str, Any], max_length: int | None = None, template: TemplateMode = "chat"
) -> Encoded:
    if record.get("messages") is not None:
        return encode_messages(tokenizer, record["messages"], max_length)
    if record.get("prompt") is None and record.get("completion") is None and isinstance(record.get("text"), str):
        return encode_raw(tokenizer, "", record["text"], max_length)  # language modeling: the whole text is the target
    return encode_example(tokenizer, record["prompt"], record["completion"], max_length, template)


def encode_prompt(tokenizer: Any, prompt: str | list[dict[str, Any]], template: TemplateMode = "chat") -> list[int]:
    """Token ids of a prompt ready for generation (ends with the assistant header)."""
    if template == "raw":
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        bos = tokenizer.bos_token_id
        return ([bos] if bos is not None and ids[:1] != [bos] else []) + ids
    text = render(tokenizer, to_messages(prompt), add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_text(prompt: Any, roles: bool = True) -> str:
    """A prompt as plain text, for judges, battles and tokenizer vocabularies.

    ``prompt`` is a string, a TRL message list (one ``role: content`` line per message; only the
    contents with ``roles=False``), or an object with a ``.text`` string (a sandbox prompt).
    """
    if isinstance(prompt, str):
        return prompt
    text = getattr(prompt, "text", None)
    if isinstance(text, str):
        return text
    if isinstance(prompt, list):
        return "\n".join(f"{m['role']}: {m['content']}" if roles else str(m["content"]) for m in prompt)
    raise ValueError(f"prompt {prompt!r} is neither a string, a message list nor has a .text string")
