"""Small files in every dataset shape alignkit reads (TRL's, HH-RLHF's, UltraFeedback's), and chat templates
shaped like Gemma's and Qwen3's (our own Jinja text, written for these tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

QUESTIONS = [(a, b) for a in range(1, 5) for b in range(1, 4)]  # 12 arithmetic prompts


def _q(a: int, b: int) -> str:
    return f"What is {a} plus {b}?"


def _good(a: int, b: int) -> str:
    return f"{a} plus {b} is {a + b}. Happy to help!"


def _bad(a: int, b: int) -> str:
    return f"Go away. It is {a + b + 1}."


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def explicit_standard(n: int = 12) -> list[dict[str, Any]]:
    return [{"prompt": _q(a, b), "chosen": _good(a, b), "rejected": _bad(a, b)} for a, b in QUESTIONS[:n]]


def implicit_standard(n: int = 12) -> list[dict[str, Any]]:
    """TRL's standard implicit prompt: the question is the start of both strings."""
    return [{"chosen": f"{_q(a, b)} {_good(a, b)}", "rejected": f"{_q(a, b)} {_bad(a, b)}"} for a, b in QUESTIONS[:n]]


def implicit_conversational(n: int = 12) -> list[dict[str, Any]]:
    return [
        {"chosen": [user(_q(a, b)), assistant(_good(a, b))], "rejected": [user(_q(a, b)), assistant(_bad(a, b))]}
        for a, b in QUESTIONS[:n]
    ]


def ultrafeedback_binarized(n: int = 12) -> list[dict[str, Any]]:
    """HuggingFaceH4/ultrafeedback_binarized's shape: a prompt string, and conversations that repeat it."""
    return [
        {
            "prompt": _q(a, b),
            "prompt_id": f"id{a}{b}",
            "chosen": [user(_q(a, b)), assistant(_good(a, b))],
            "rejected": [user(_q(a, b)), assistant(_bad(a, b))],
            "score_chosen": 9.0,
            "score_rejected": 3.0,
        }
        for a, b in QUESTIONS[:n]
    ]


def hh_rlhf(n: int = 12) -> list[dict[str, Any]]:
    """Anthropic HH-RLHF raw: whole conversations as '\\n\\nHuman: … \\n\\nAssistant: …', two turns each."""
    rows = []
    for a, b in QUESTIONS[:n]:
        history = f"\n\nHuman: Hi, can you do sums?\n\nAssistant: Yes, ask me one.\n\nHuman: {_q(a, b)}\n\nAssistant:"
        rows.append({"chosen": f"{history} {_good(a, b)}", "rejected": f"{history} {_bad(a, b)}"})
    return rows


def ultrafeedback_fine_grained(n: int = 12) -> list[dict[str, Any]]:
    """openbmb/UltraFeedback's shape: an instruction and completions with per-aspect ratings (strings, 'N/A')."""

    def rated(text: str, model: str, ratings: dict[str, str]) -> dict[str, Any]:
        return {
            "model": model,
            "response": text,
            "annotations": {k: {"Rating": v, "Rationale": "..."} for k, v in ratings.items()},
            "overall_score": 0.0,
        }

    rows = []
    for a, b in QUESTIONS[:n]:
        aspects = ("helpfulness", "honesty", "instruction_following", "truthfulness")
        rows.append(
            {
                "source": "arith",
                "instruction": _q(a, b),
                "models": ["m1", "m2", "m3"],
                "completions": [
                    rated(_bad(a, b), "m1", dict(zip(aspects, ("2", "3", "2", "N/A")))),
                    rated(_good(a, b), "m2", dict(zip(aspects, ("5", "5", "4", "5")))),
                    rated(f"{a + b}.", "m3", dict(zip(aspects, ("4", "4", "4", "4")))),
                ],
            }
        )
    return rows


def text_rows(n: int = 12) -> list[dict[str, Any]]:
    """TRL's standard language modeling shape."""
    return [{"text": f"{_q(a, b)} {_good(a, b)}"} for a, b in QUESTIONS[:n]]


def system_conversations(n: int = 12) -> list[dict[str, Any]]:
    return [
        {"messages": [{"role": "system", "content": "Answer in one sentence."}, user(_q(a, b)), assistant(_good(a, b))]}
        for a, b in QUESTIONS[:n]
    ]


def multi_turn_conversations(n: int = 12) -> list[dict[str, Any]]:
    return [
        {"messages": [user("Hi, can you do sums?"), assistant("Yes, ask me one."), user(_q(a, b)), assistant(_good(a, b))]}
        for a, b in QUESTIONS[:n]
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# Gemma-like: refuses system messages, as Gemma's own template does (raise_exception).
GEMMA_LIKE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

# Qwen3-like: an assistant turn after the last user turn carries a <think> block (empty when there is
# no reasoning); earlier assistant turns are history and lose it. Not prefix-stable over several turns.
QWEN3_LIKE = (
    "{%- set ns = namespace(last_user=-1) %}"
    "{%- for m in messages %}{%- if m['role'] == 'user' %}{%- set ns.last_user = loop.index0 %}{%- endif %}{%- endfor %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'assistant' %}"
    "{%- set content = m['content'] %}{%- set reasoning = m.get('reasoning_content', '') %}"
    "{%- if '</think>' in content %}"
    "{%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{%- if loop.index0 > ns.last_user %}"
    "{{- '<|im_start|>assistant\\n<think>\\n' + reasoning + '\\n</think>\\n\\n' + content + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>assistant\\n' + content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- else %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# A template whose generation prompt is not how it starts an assistant turn: no reply can be located.
BROKEN_LIKE = (
    "{% for m in messages %}<|{{ 'bot' if m['role'] == 'assistant' else m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
