"""The rollout engine: log-probs consistent with the one log-prob function, stop handling, sampling."""

from __future__ import annotations

import pytest
import torch
from rl_helpers import PROMPTS, StopBias

from alignkit.data import Encoded, collate, encode_prompt
from alignkit.models import sequence_logprobs
from alignkit.train.rollout import decode_responses, rollout_logprobs, sample, stop_token_ids, top_p_filter


def _prompts(tok):
    ids = [encode_prompt(tok, p) for p in PROMPTS]
    assert len({len(p) for p in ids}) > 1  # different lengths, so left padding is exercised
    return ids


def _sample(model, tok, prompts, seed=0, **kw):
    args = dict(pad_id=tok.pad_token_id, stop_ids=stop_token_ids(tok), max_new_tokens=12, temperature=0.7)
    args.update(kw)
    return sample(model, prompts, generator=torch.Generator().manual_seed(seed), **args)


def test_sampling_logprobs_equal_sequence_logprobs_at_same_temperature(tiny):
    """Sampling-time log-probs (KV cache, left padding) == a plain right-padded rescoring at T=0.7."""
    model, tok = tiny
    model = StopBias(model, tok.eos_token_id, 2.0)  # mixed stopped / unstopped rows
    prompts = _prompts(tok)
    rollout = _sample(model, tok, prompts)
    assert rollout.stopped.any() and (rollout.response_mask.sum(-1) > 1).any()

    encoded = []
    for p, ids, mask in zip(prompts, rollout.response_ids.tolist(), rollout.response_mask.tolist()):
        response = [t for t, m in zip(ids, mask) if m]
        encoded.append(Encoded(p + response, [False] * len(p) + [True] * len(response)))
    with torch.no_grad():
        independent = sequence_logprobs(model, collate([[e] for e in encoded], tok.pad_token_id), temperature=0.7)
        at_t1 = sequence_logprobs(model, collate([[e] for e in encoded], tok.pad_token_id), temperature=1.0)
        rescored, _ = rollout_logprobs(model, rollout, temperature=0.7)
    torch.testing.assert_close(rollout.logprobs.sum(-1), independent.sequence_logps, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(rescored * rollout.response_mask, rollout.logprobs, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(at_t1.sequence_logps, independent.sequence_logps, atol=1e-2)  # T matters


def test_truncates_at_first_stop_token(tiny):
    model, tok = tiny
    model = StopBias(model, tok.eos_token_id, 2.0)
    rollout = _sample(model, tok, _prompts(tok) * 4, seed=1)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    for ids, mask, stopped, logps in zip(
        rollout.response_ids.tolist(), rollout.response_mask.tolist(), rollout.stopped.tolist(), rollout.logprobs.tolist()
    ):
        n = sum(mask)
        assert mask == [True] * n + [False] * (len(mask) - n)  # real tokens are a prefix
        if stopped:
            assert ids[n - 1] == eos and eos not in ids[: n - 1]  # ends at the *first* EOS, kept
            assert all(t == pad for t in ids[n:]) and all(v == 0.0 for v in logps[n:])
        else:
            assert n == 12 and eos not in ids
    assert rollout.stopped.any() and not rollout.stopped.all()


def test_decoded_responses_drop_stop_token_and_padding(tiny):
    model, tok = tiny
    model = StopBias(model, tok.eos_token_id, 2.0)
    rollout = _sample(model, tok, _prompts(tok), seed=2)
    texts = decode_responses(tok, rollout, stop_token_ids(tok))
    for text, ids, mask in zip(texts, rollout.response_ids.tolist(), rollout.response_mask.tolist()):
        kept = [t for t, m in zip(ids, mask) if m and t != tok.eos_token_id]
        assert text == tok.decode(kept, skip_special_tokens=True).strip()
        assert "<|end|>" not in text and "<|pad|>" not in text


def test_sampling_is_deterministic_given_the_generator(tiny):
    model, tok = tiny
    a = _sample(model, tok, _prompts(tok), seed=5)
    b = _sample(model, tok, _prompts(tok), seed=5)
    c = _sample(model, tok, _prompts(tok), seed=6)
    assert torch.equal(a.response_ids, b.response_ids)
    assert not torch.equal(a.response_ids, c.response_ids)


def test_tiny_top_p_is_greedy(tiny):
    model, tok = tiny
    prompts = _prompts(tok)
    rollout = _sample(model, tok, prompts, top_p=1e-6, max_new_tokens=6, temperature=1.0)
    ids = torch.tensor(prompts[0] + rollout.response_ids[0].tolist())
    with torch.no_grad():
        logits = model(input_ids=ids[None]).logits[0]
    greedy = logits[len(prompts[0]) - 1 : -1].argmax(-1)
    assert rollout.response_ids[0].tolist() == greedy.tolist()


def test_top_p_filter_keeps_smallest_set_reaching_p():
    # probs 0.5, 0.3, 0.2: top_p=0.7 keeps {0.5, 0.3} (0.5 < 0.7, 0.8 >= 0.7); top_p=0.5 keeps {0.5}
    logits = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))
    assert torch.isinf(top_p_filter(logits, 0.7)).tolist() == [[True, False, False]]
    assert torch.isinf(top_p_filter(logits, 0.5)).tolist() == [[True, False, True]]


def test_zero_temperature_is_refused(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="temperature must be > 0"):
        _sample(model, tok, _prompts(tok), temperature=0.0)
