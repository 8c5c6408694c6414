"""Chat templates real models ship: Gemma-style (refuses system messages) and Qwen3-style (thinking blocks).

The templates are our own Jinja text shaped like those models' (see data_shapes.py); the tokenizer
is the tiny one, so only the template differs from the default path.
"""

from __future__ import annotations

import copy
import logging
import uuid

import pytest
from data_shapes import BROKEN_LIKE, GEMMA_LIKE, QWEN3_LIKE, assistant, user
from jinja2.exceptions import TemplateError

from alignkit.data.chat import encode_example, encode_messages, encode_prompt, merge_system, render


def _with_template(tokenizer, template: str):
    """A copy of the tokenizer with ``template`` (made unique, so the log-once memory starts fresh)."""
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = template + "{# " + uuid.uuid4().hex + " #}"
    return tok


def _targets(tok, enc) -> str:
    return tok.decode([i for i, m in zip(enc.input_ids, enc.loss_mask) if m], skip_special_tokens=False)


def test_merge_system_folds_each_system_message_into_the_next_user_turn():
    msgs = [{"role": "system", "content": "S"}, user("u1"), assistant("a1"), {"role": "system", "content": "S2"}, user("u2")]
    assert merge_system(msgs) == [user("S\n\nu1"), assistant("a1"), user("S2\n\nu2")]
    assert merge_system([{"role": "system", "content": "S"}]) == [user("S")]


def test_gemma_style_template_gets_the_system_message_merged_logged_once(tiny_tokenizer, caplog):
    tok = _with_template(tiny_tokenizer, GEMMA_LIKE)
    msgs = [{"role": "system", "content": "Answer in one sentence."}, user("What is 2 plus 2?"), assistant("It is 4.")]
    with caplog.at_level(logging.WARNING, logger="alignkit.data.chat"):
        first = encode_messages(tok, msgs)
        second = encode_example(tok, msgs[:2], "It is 4.")
        gen = encode_prompt(tok, msgs[:2])
    text = render(tok, msgs)
    assert "system" not in text and text.count("<start_of_turn>user") == 1
    assert "<start_of_turn>user\nAnswer in one sentence.\n\nWhat is 2 plus 2?<end_of_turn>" in text
    assert _targets(tok, first) == "It is 4.<end_of_turn>\n" and first.input_ids == second.input_ids
    assert tok.decode(gen).endswith("<start_of_turn>model\n")
    assert sum("refuses system messages" in r.getMessage() for r in caplog.records) == 1
    assert "<start_of_turn>user\nWhat is 2 plus 2?<end_of_turn>" in render(tok, msgs[1:])  # nothing to merge


def test_template_errors_other_than_refusing_system_are_not_swallowed(tiny_tokenizer):
    tok = _with_template(tiny_tokenizer, "{{ raise_exception('roles must alternate') }}")
    with pytest.raises(TemplateError, match="roles must alternate"):
        render(tok, [user("a"), user("b")])


def test_qwen3_style_single_turn_trains_on_the_think_block_and_reply(tiny_tokenizer):
    tok = _with_template(tiny_tokenizer, QWEN3_LIKE)
    enc = encode_example(tok, "What is 2 plus 2?", "It is 4.")
    assert _targets(tok, enc) == "<think>\n\n</think>\n\nIt is 4.<|im_end|>\n"
    # what generation is prompted with is exactly the context the target follows
    prompt_ids = encode_prompt(tok, "What is 2 plus 2?")
    assert enc.input_ids[: len(prompt_ids)] == prompt_ids and not any(enc.loss_mask[: len(prompt_ids)])


def test_qwen3_style_multi_turn_trains_the_last_turn_as_a_finished_turn(tiny_tokenizer, caplog):
    tok = _with_template(tiny_tokenizer, QWEN3_LIKE)
    msgs = [user("Hi"), assistant("Hello."), user("What is 2 plus 2?"), assistant("<think>\nadd them\n</think>\n\nIt is 4.")]
    with caplog.at_level(logging.WARNING, logger="alignkit.data.chat"):
        enc = encode_messages(tok, msgs)
        encode_messages(tok, msgs)
    text = tok.decode(enc.input_ids, skip_special_tokens=False)
    # history turn without its think block (as the template renders history), last turn with it
    assert "<|im_start|>assistant\nHello.<|im_end|>" in text
    assert _targets(tok, enc) == "<think>\nadd them\n</think>\n\nIt is 4.<|im_end|>\n"
    assert sum("thinking-style" in r.getMessage() for r in caplog.records) == 1


def test_a_template_that_cannot_locate_the_reply_is_refused_with_what_to_pass(tiny_tokenizer):
    tok = _with_template(tiny_tokenizer, BROKEN_LIKE)
    with pytest.raises(ValueError, match="--template raw"):
        encode_example(tok, "What is 2 plus 2?", "It is 4.")
    # raw mode does not need the template at all
    assert encode_example(tok, "What is 2 plus 2?", " It is 4.", template="raw").loss_mask.count(True) > 0


def test_a_prompts_own_assistant_turns_are_context(tiny_tokenizer):
    prompt = [user("Hi"), assistant("Hello."), user("What is 2 plus 2?")]
    enc = encode_example(tiny_tokenizer, prompt, [assistant("It is 4.")])
    assert _targets(tiny_tokenizer, enc) == "It is 4.<|end|>\n"
