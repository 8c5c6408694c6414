"""The one path from records to token ids with a loss mask.

Every trainer (SFT, reward model, DPO, KTO, RL) and the generator turn text into tokens here, so
chat-template handling, masking and special tokens are decided once.

How the mask is found: the conversation is rendered with the tokenizer's chat template (or
:data:`DEFAULT_CHAT_TEMPLATE` when it has none) and tokenized *once*, with character offsets. Each
assistant turn's character span is found by rendering the conversation up to that turn with the
generation prompt (its start) and through that turn (its end). Tokens that start inside an
assistant span are trained on; everything else is context. Tokenizing once avoids the
token-merge artefacts of tokenizing turns separately.

Special tokens: a chat template writes its own BOS/EOS text, so the rendered string is tokenized
with ``add_special_tokens=False``; tokenizing it with special tokens on is the classic double-BOS
bug. In ``raw`` mode (no template) we add BOS once (if the tokenizer has one) and EOS once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

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


def render(tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
    ensure_chat_template(tokenizer)
    return tokenizer.apply_chat_template(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
    )


def _assistant_spans(tokenizer: Any, messages: list[dict[str, Any]], full: str) -> list[tuple[int, int]]:
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start_text = render(tokenizer, messages[:i], add_generation_prompt=True)
        end_text = render(tokenizer, messages[: i + 1])
        if not full.startswith(start_text) or not full.startswith(end_text):
            raise ValueError(
                "the tokenizer's chat template is not prefix-stable (rendering the first turns does "
                "not give a prefix of the whole conversation), so assistant tokens cannot be located; "
                "set a simpler template with tokenizer.chat_template"
            )
        spans.append((len(start_text), len(end_text)))
    return spans


def encode_messages(tokenizer: Any, messages: list[dict[str, Any]], max_length: int | None = None) -> Encoded:
    """Tokenize a conversation; assistant turns (content and end-of-turn tokens) are the targets."""
    full = render(tokenizer, messages)
    spans = _assistant_spans(tokenizer, messages, full)
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
    return encode_messages(tokenizer, to_messages(prompt, completion), max_length)


def encode_sft_record(
    tokenizer: Any, record: dict[str, Any], max_length: int | None = None, template: TemplateMode = "chat"
) -> Encoded:
    if record.get("messages") is not None:
        return encode_messages(tokenizer, record["messages"], max_length)
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
