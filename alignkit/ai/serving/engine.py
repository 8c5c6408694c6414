"""One decode loop for every request: continuous batching, stop sequences, streaming deltas.

A request becomes a :class:`Job` of ``n`` :class:`Choice` s. One thread (:class:`Engine`) owns the
model and loops: admit waiting choices into the :class:`~alignkit.ai.serving.batch.RunningBatch`
(one prefill forward), sample one token for every row, let finished or abandoned rows leave, and
run one decode forward for the rest. The HTTP side never touches the model; it reads
:class:`Delta` s from its job.

Sampling is the rollout's (:mod:`alignkit.train.rollout`): stop criteria from
``models.generation.stop_criteria`` (generation_config EOS ids and stop strings),
``softmax(logits / T)`` with the same top-p filter, ``argmax`` at ``T = 0``.
Each choice has its own ``torch.Generator`` (seeded from the request's ``seed``, or from the OS
when there is none, so unseeded requests differ), so neighbours in a batch never share RNG state
and a seeded request gives the same text whoever it shares the batch with. Reported log-probs are
those of the raw next-token distribution (temperature 1), as vLLM reports by default.

Text, tokens and stop sequences stay consistent by construction: a choice's text is the decode of
its tokens; a stop sequence cuts the text where it begins, and the tokens kept (for ``logprobs``
and ``usage``) are those that contribute text before the cut (plus the stop token that ended a
turn). Deltas release text only when it can no longer change: the longest tail that could still
grow into a stop sequence and a trailing incomplete UTF-8 character are held back. Streaming
and non-streaming responses are built from the same deltas, so joined chunks equal the
non-streamed text.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from alignkit.ai.serving.batch import RunningBatch
from alignkit.models.generation import stop_criteria
from alignkit.train.rollout import top_p_filter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    top_logprobs: int = 0  # alternatives listed per token
    logprobs: bool = False  # report per-token log-probs at all


@dataclass
class Delta:
    """New output of one choice: text and log-prob entries since the last delta; ``finish`` once."""

    index: int
    text: str
    entries: list[dict[str, Any]]
    finish: str | None = None


def mix_seed(seed: int, index: int) -> int:
    """Choice ``index``'s seed: choice 0 uses ``seed`` itself, others a hash of (seed, index)."""
    if index == 0:
        return seed
    return (seed * 1_000_003 + index * 7_919 + 1) % (2**63 - 1)


class Choice:
    """One sequence being decoded, with its text bookkeeping."""

    def __init__(self, job: Job, index: int, prompt_ids: list[int], params: SamplingParams, seed: int) -> None:
        self.job, self.index, self.prompt_ids, self.params = job, index, prompt_ids, params
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.tokens: list[int] = []
        self.entries: list[dict[str, Any]] = []
        self.text = ""
        self.finish: str | None = None
        self.cut: int | None = None  # text length after a stop sequence trimmed it
        self.sent_tokens = 0
        self.sent_chars = 0

    # -- called by the engine thread only
    def push(self, token: int, entry: dict[str, Any] | None, is_stop_token: bool, decode: Callable[[list[int]], str]) -> None:
        self.tokens.append(token)
        if entry is not None:
            self.entries.append(entry)
        self.text = decode(self.tokens)
        if is_stop_token:
            self.finish = "stop"
            return
        hits = [i for i in (self.text.find(s) for s in self.params.stop if s) if i >= 0]
        if hits:
            self.cut, self.finish = min(hits), "stop"
        elif len(self.tokens) >= self.params.max_tokens:
            self.finish = "length"

    def stable_length(self) -> int:
        """Characters of text that later tokens can no longer change or trim."""
        if self.finish is not None:
            return len(self.text) if self.cut is None else self.cut
        end = len(self.text)
        while end > 0 and self.text[end - 1] == "\ufffd":  # an incomplete UTF-8 character so far
            end -= 1
        hold = 0
        for stop in self.params.stop:
            for k in range(min(len(stop) - 1, end), hold, -1):
                if self.text[end - k : end] == stop[:k]:
                    hold = k
                    break
        return end - hold

    def delta(self, decode: Callable[[list[int]], str]) -> Delta | None:
        """What the client has not seen yet and can be sure of; ``None`` if nothing new."""
        stable = self.stable_length()
        # A token is released once its text lies inside the stable text; at the end, every token
        # that contributed text before the cut (or no text at all before it) is kept.
        count = self.sent_tokens
        while count < len(self.tokens):
            start = len(decode(self.tokens[:count]))
            end = len(decode(self.tokens[: count + 1]))
            if end <= stable or (self.finish is not None and start < stable):
                if self.params.logprobs and count < len(self.entries):
                    self.entries[count]["offset"] = start
                count += 1
            else:
                break
        if self.finish is not None:
            self.tokens, self.entries = self.tokens[:count], self.entries[:count]
        if stable <= self.sent_chars and count == self.sent_tokens and self.finish is None:
            return None
        out = Delta(self.index, self.text[self.sent_chars : stable], self.entries[self.sent_tokens : count], self.finish)
        self.sent_chars, self.sent_tokens = max(stable, self.sent_chars), count
        return out


class Job:
    """One request: its choices and the deltas waiting for the HTTP side."""

    def __init__(self, prompts: Sequence[list[int]], n: int, params: SamplingParams, seed: int | None) -> None:
        base = secrets.randbits(62) if seed is None else seed
        self.prompt_tokens = sum(len(p) for p in prompts)
        self.choices = [
            Choice(self, i * n + j, list(prompt), params, mix_seed(base, i * n + j))
            for i, prompt in enumerate(prompts)
            for j in range(n)
        ]
        self.lock = threading.Lock()
        self.pending: deque[Delta] = deque()
        self.error: str | None = None
        self.cancelled = False
        self.notify: Callable[[], None] = lambda: None
        self.unfinished = len(self.choices)

    @property
    def done(self) -> bool:
        return self.unfinished == 0 or self.error is not None

    def cancel(self) -> None:
        """The client went away: the engine drops this job's rows at the next step."""
        self.cancelled = True

    def take(self) -> list[Delta]:
        with self.lock:
            out = list(self.pending)
            self.pending.clear()
        return out

    def completion_tokens(self) -> int:
        return sum(len(c.tokens) for c in self.choices)

    def _put(self, deltas: list[Delta], finished: int = 0, error: str | None = None) -> None:
        with self.lock:
            self.pending.extend(deltas)
            self.unfinished -= finished
            if error is not None:
                self.error = error
        try:
            self.notify()
        except RuntimeError:  # the request's event loop is gone (server stopping); nobody is waiting
            self.cancelled = True


class QueueFull(RuntimeError):
    pass


@dataclass
class EngineStats:
    steps: int = 0
    prefills: int = 0
    peak_batch: int = 0
    finished: int = 0
    cancelled: int = 0
    running: int = 0
    waiting: int = 0
    errors: int = 0
    batch_sizes: list[int] = field(default_factory=list)  # last few step sizes, for tests and logs


class Engine:
    """The decode loop thread: owns the model; jobs in, deltas out."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, max_batch_size: int = 32, max_queue: int = 1024) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_batch_size, self.max_queue = max_batch_size, max_queue
        # The rollout's stop criteria: every EOS id of the tokenizer and the model's generation_config,
        # plus its multi-token stop strings (added to each request's own stop sequences).
        criteria = stop_criteria(model, tokenizer)
        self.stop_ids = set(criteria.token_ids)
        self.stop_strings = tuple(criteria.strings)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.stop_ids)
        self.batch = RunningBatch(model, pad)
        self.running: list[Choice] = []
        self.waiting: deque[Choice] = deque()
        self.cond = threading.Condition()
        self.stats = EngineStats()
        self._stop = False
        self.thread = threading.Thread(target=self._loop, name="alignkit-decode", daemon=True)
        self.thread.start()

    def decode(self, tokens: list[int]) -> str:
        kept = [t for t in tokens if t not in self.stop_ids]
        return str(self.tokenizer.decode(kept, skip_special_tokens=True))

    def submit(self, job: Job) -> Job:
        with self.cond:
            if len(self.waiting) + len(job.choices) > self.max_queue:
                raise QueueFull(f"{len(self.waiting)} sequences are waiting (--max-queue {self.max_queue}); retry later")
            self.waiting.extend(job.choices)
            self.stats.waiting = len(self.waiting)
            self.cond.notify()
        return job

    def close(self) -> None:
        with self.cond:
            self._stop = True
            self.cond.notify()
        self.thread.join(timeout=10)

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self._stop and not self.running and not self.waiting:
                    self.cond.wait()
                if self._stop:
                    return
                room = self.max_batch_size - len(self.running)
                joining: list[Choice] = []
                while self.waiting and len(joining) < room:
                    choice = self.waiting.popleft()
                    if not choice.job.cancelled and choice.job.error is None:
                        joining.append(choice)
                self.stats.waiting = len(self.waiting)
            try:
                self._step(joining)
            except Exception as err:  # a failed forward must not kill the server: fail the batch, go on
                log.exception("decode step failed")
                self.stats.errors += 1
                for job in {id(c.job): c.job for c in self.running + joining}.values():
                    job._put([], error=f"decoding failed: {type(err).__name__}: {err}")
                self.running = []
                self.batch.keep([])

    @torch.no_grad()
    def _step(self, joining: list[Choice]) -> None:
        if joining:
            self.batch.join([c.prompt_ids for c in joining])
            self.running.extend(joining)
            self.stats.prefills += 1
        self.stats.steps += 1
        size = len(self.running)
        self.stats.peak_batch = max(self.stats.peak_batch, size)
        self.stats.batch_sizes = [*self.stats.batch_sizes[-63:], size]
        logits = self.batch.logits.float().cpu()
        logps = logits.log_softmax(-1)
        tokens: list[int] = []
        keep: list[int] = []
        touched: dict[int, tuple[Job, list[Delta], int]] = {}
        for row, choice in enumerate(self.running):
            job = choice.job
            if job.cancelled or job.error is not None:
                self.stats.cancelled += job.cancelled
                continue
            token = self._sample(logits[row], choice)
            entry = self._entry(logps[row], token, choice.params) if choice.params.logprobs else None
            choice.push(token, entry, token in self.stop_ids, self.decode)
            delta = choice.delta(self.decode)
            _, deltas, finished = touched.setdefault(id(job), (job, [], 0))
            if delta is not None:
                deltas.append(delta)
            if choice.finish is not None:
                touched[id(job)] = (job, deltas, finished + 1)
                self.stats.finished += 1
            else:
                keep.append(row)
                tokens.append(token)
        for job, deltas, finished in touched.values():
            if deltas or finished:
                job._put(deltas, finished)
        self.batch.keep(keep)
        self.running = [self.running[r] for r in keep]
        self.stats.running = len(self.running)
        if self.running:
            self.batch.step(torch.tensor(tokens, dtype=torch.long))

    def _sample(self, logits: torch.Tensor, choice: Choice) -> int:
        p = choice.params
        if p.temperature == 0:
            return int(logits.argmax())
        scaled = logits / p.temperature
        if p.top_p < 1.0:
            scaled = top_p_filter(scaled[None], p.top_p)[0]
        return int(torch.multinomial(scaled.softmax(-1), 1, generator=choice.generator))

    def _entry(self, logps: torch.Tensor, token: int, params: SamplingParams) -> dict[str, Any]:
        entry = self._token(token, float(logps[token]))
        entry["top_logprobs"] = []
        if params.top_logprobs:
            values, indices = logps.topk(min(params.top_logprobs, logps.numel()))
            entry["top_logprobs"] = [self._token(int(i), float(v)) for v, i in zip(values, indices)]
        return entry

    def _token(self, token_id: int, logprob: float) -> dict[str, Any]:
        text = str(self.tokenizer.decode([token_id]))
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}
