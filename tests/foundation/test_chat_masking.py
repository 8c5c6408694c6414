"""The one tokenization path: masks cover exactly the assistant tokens; BOS/EOS appear once."""

from __future__ import annotations

import pytest

from alignkit.data import TooLongError, encode_example, encode_messages, encode_prompt

CONVERSATION = [
    {"role": "system", "content": "Be kind."},
    {"role": "user", "content": "What colour is the sky?"},
    {"role": "assistant", "content": "The sky is blue."},
    {"role": "user", "content": "And at night?"},
    {"role": "assistant", "content": "It is dark."},
]


def _targets(tok, enc) -> str:
    return tok.decode([t for t, m in zip(enc.input_ids, enc.loss_mask) if m])


def test_multi_turn_mask_is_exactly_the_assistant_turns(tiny_tokenizer):
    tok = tiny_tokenizer
    enc = encode_messages(tok, CONVERSATION)
    eos = tok.eos_token
    # Targets are both assistant replies with their end-of-turn token (and its newline), nothing else.
    assert _targets(tok, enc) == f"The sky is blue.{eos}\nIt is dark.{eos}\n"
    # Every user/system token is context: the masked-out text contains the questions, verbatim.
    context = tok.decode([t for t, m in zip(enc.input_ids, enc.loss_mask) if not m])
    assert "What colour is the sky?" in context and "And at night?" in context and "Be kind." in context
    assert "blue" not in context and "dark" not in context


def test_mask_boundaries_are_contiguous_runs(tiny_tokenizer):
    enc = encode_messages(tiny_tokenizer, CONVERSATION)
    runs, prev = 0, False
    for m in enc.loss_mask:
        runs += m and not prev
        prev = m
    assert runs == 2  # one run per assistant turn


def test_no_double_bos_or_eos_chat(tiny_tokenizer):
    tok = tiny_tokenizer
    enc = encode_example(tok, "What colour is the sky?", "The sky is blue.")
    assert enc.input_ids.count(tok.bos_token_id) == 1 and enc.input_ids[0] == tok.bos_token_id
    assert enc.input_ids.count(tok.eos_token_id) == 2  # end of the user turn and of the assistant turn
    assert enc.input_ids[-2:] == tok("<|end|>\n", add_special_tokens=False)["input_ids"]


def test_no_double_bos_or_eos_raw(tiny_tokenizer):
    tok = tiny_tokenizer
    enc = encode_example(tok, "one two", " three", template="raw")
    assert enc.input_ids.count(tok.bos_token_id) == 1 and enc.input_ids[0] == tok.bos_token_id
    assert enc.input_ids.count(tok.eos_token_id) == 1 and enc.input_ids[-1] == tok.eos_token_id
    # Text that already carries BOS/EOS does not get a second copy.
    enc2 = encode_example(tok, tok.bos_token + "one two", " three" + tok.eos_token, template="raw")
    assert enc2.input_ids == enc.input_ids
    assert _targets(tok, enc) == " three" + tok.eos_token


def test_template_that_writes_bos_itself_is_not_doubled(tiny_tokenizer):
    """A tokenizer whose post-processor adds BOS and whose template writes it too (Llama-style)."""
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.add_bos_token = True
    assert tok("hi")["input_ids"][0] == tok.bos_token_id  # precondition: this tokenizer adds BOS itself
    enc = encode_example(tok, "hi", "hello")
    assert enc.input_ids.count(tok.bos_token_id) == 1


def test_prompt_for_generation_ends_with_assistant_header(tiny_tokenizer):
    tok = tiny_tokenizer
    ids = encode_prompt(tok, "What colour is the sky?")
    assert tok.decode(ids).endswith("<|assistant|>\n")
    full = encode_example(tok, "What colour is the sky?", "The sky is blue.")
    assert full.input_ids[: len(ids)] == ids  # prompt tokens are a prefix of the training sequence
    assert not any(full.loss_mask[: len(ids)]) and all(full.loss_mask[len(ids) :])


def test_too_long_prompt_raises(tiny_tokenizer):
    with pytest.raises(TooLongError):
        encode_example(tiny_tokenizer, "word " * 200, "answer", max_length=16)


def test_truncation_keeps_prefix_and_targets(tiny_tokenizer):
    full = encode_example(tiny_tokenizer, "hi", "one two three four five six seven eight nine ten")
    cut = encode_example(tiny_tokenizer, "hi", "one two three four five six seven eight nine ten", max_length=len(full) - 3)
    assert cut.input_ids == full.input_ids[: len(full) - 3] and any(cut.loss_mask)
