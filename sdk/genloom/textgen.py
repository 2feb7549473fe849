"""Token-by-token text generation over any backend, in numpy: the one sampling layer.

A backend (the torch GPT or LSTM, or an ONNX Runtime session) implements
:class:`DecoderSession`: ``start`` runs the left-padded prompts once and
``advance`` feeds one new token per sequence, each returning the next-token
logits while the session keeps its KV cache or recurrent state; ``compact``
drops the rows that have finished and the cache's leading columns that are
padding for every row left. Everything else, the Hugging Face knobs, stop
strings, end of text and streaming, lives here, so every backend samples the
same tokens for the same seed.

Every sequence gets its own budget, ``min(max_new_tokens, context_length -
len(its prompt))``, as it would alone. Where the rows of a batch share one cache
length (a cache that grows by one column per step), a short prompt padded to a
long one would reach the context early.
Whenever rows finish, the loop compacts the session: the finished rows go, and
so do the leading columns that are padding for every row left, so the longest
row left fills the cache and, within its own budget, keeps it within the
context. Positions come from the attention mask, so dropping columns that are
padding for every row changes no logit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from genloom.errors import ConfigError
from genloom.sampling import TextSampling
from genloom.tokenizer import Tokenizer


class DecoderSession(Protocol):
    """One batch of sequences being decoded; holds the KV cache or recurrent state."""

    def start(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Run int64 ``(B, T)`` prompts, left-padded where ``mask`` is 0; return float ``(B, V)`` next-token logits."""

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        """Append one int64 token per sequence, ``(B,)``; return the next ``(B, V)`` logits."""

    def compact(self, rows: np.ndarray, columns: int) -> None:
        """Keep only the sequences ``rows`` (int64 indices, in that order) and drop the first ``columns``
        cache positions, which are padding for every kept row (a recurrent state has none to drop)."""


class TextModel(Protocol):
    """What the decoding loop needs from a model: a tokenizer, a context size and sessions."""

    @property
    def tokenizer(self) -> Tokenizer:
        """Turns text into token ids and back."""

    @property
    def context_length(self) -> int | None:
        """Most tokens a sequence may hold (prompt + generated); None for no limit (an LSTM)."""

    @property
    def prepend_end_of_text(self) -> bool:
        """Start every prompt with ``<|endoftext|>``, as the model saw documents start in training."""

    def session(self) -> DecoderSession:
        """A fresh decoding session (prefill, then one token a step)."""


@dataclass
class Decoded:
    """The generated sequences, in order: each prompt's ``num_return_sequences`` in turn."""

    texts: list[str]
    tokens: list[list[int]]


def generate(model: TextModel, settings: TextSampling) -> Decoded:
    """Generate every sequence that ``settings`` asks for."""
    final: list[list[int]] = []
    for final in _decode(model, settings):  # noqa: B007 - each step extends the same lists; keep the last
        pass
    return Decoded([_cut_at_stop(model.tokenizer.decode(tokens), settings.stop) for tokens in final], final)


def stream(model: TextModel, settings: TextSampling) -> Iterator[str]:
    """Yield one sequence's new text piece by piece, as its tokens are decoded."""
    if len(settings.prompts) * settings.num_return_sequences != 1:
        raise ConfigError("stream: give one prompt and num_return_sequences=1 (use generate for batches)")
    hold_back = max((len(s) for s in settings.stop or []), default=1) - 1
    emitted = ""
    text = ""
    for new_tokens in _decode(model, settings):
        text = model.tokenizer.decode(new_tokens[0])
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            continue
        ready = _cut_at_stop(text, settings.stop)[: max(len(emitted), len(text) - hold_back)]
        if len(ready) > len(emitted):
            yield ready[len(emitted) :]
            emitted = ready
    final = _cut_at_stop(text, settings.stop)
    if len(final) > len(emitted):
        yield final[len(emitted) :]


def _encode_prompts(model: TextModel, settings: TextSampling) -> list[list[int]]:
    prompts = []
    start = [model.tokenizer.end_of_text] if model.prepend_end_of_text else []
    for prompt in settings.prompts:
        tokens = start + model.tokenizer.encode(prompt)
        if not tokens:
            raise ConfigError("prompt: empty, and this model has no start token; give some text")
        if model.context_length is not None and len(tokens) >= model.context_length:
            raise ConfigError(
                f"prompt: {len(tokens)} tokens, but the model's context holds {model.context_length} "
                "(prompt plus generated tokens); shorten the prompt"
            )
        prompts.append(tokens)
    return prompts


def _left_padded(prompts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """The prompts as one int64 ``(B, T)`` batch, right-aligned, and its attention mask (0 at padding)."""
    width = max(len(p) for p in prompts)
    tokens = np.zeros((len(prompts), width), np.int64)
    mask = np.zeros((len(prompts), width), np.int64)
    for row, prompt in enumerate(prompts):
        tokens[row, width - len(prompt) :] = prompt
        mask[row, width - len(prompt) :] = 1
    return tokens, mask


def _budget(model: TextModel, settings: TextSampling, prompt: list[int]) -> int:
    """Tokens this prompt may get: ``max_new_tokens``, within what the context leaves after it."""
    if model.context_length is None:
        return settings.max_new_tokens
    return min(settings.max_new_tokens, model.context_length - len(prompt))


def _decode(model: TextModel, settings: TextSampling) -> Iterator[list[list[int]]]:
    """Yield every sequence's generated tokens so far, after each step."""
    prompts = [p for p in _encode_prompts(model, settings) for _ in range(settings.num_return_sequences)]
    rngs = [settings.rng(i % settings.num_return_sequences) for i in range(len(prompts))]
    budgets = [_budget(model, settings, prompt) for prompt in prompts]
    tokens, mask = _left_padded(prompts)
    end = model.tokenizer.end_of_text
    session = model.session()
    logits = session.start(tokens, mask)
    cache_length = tokens.shape[1]
    generated: list[list[int]] = [[] for _ in prompts]
    active = list(range(len(prompts)))  # the sequence in each of the session's rows
    while True:
        chosen = _step_all(settings, logits, active, prompts, generated, rngs, end)
        picked = chosen.tolist()
        going = [
            slot
            for slot, (row, token) in enumerate(zip(active, picked, strict=True))
            if token != end and len(generated[row]) < budgets[row]
        ]
        if settings.stop:
            going = [slot for slot in going if not _made_stop(model, settings.stop, generated[active[slot]])]
        yield generated
        if not going:
            return
        if len(going) < len(active):
            # Keep the columns of the longest kept row's prompt and fed tokens (its last chosen token is not fed
            # yet). That row then fills the cache, and within its own budget it stays within the context.
            needed = max(len(prompts[active[slot]]) + len(generated[active[slot]]) - 1 for slot in going)
            session.compact(np.array(going, np.int64), cache_length - needed)
            cache_length, active, chosen = needed, [active[slot] for slot in going], chosen[going]
        logits = session.advance(chosen)
        cache_length += 1


def _step_all(
    settings: TextSampling,
    logits: np.ndarray,
    active: list[int],
    prompts: list[list[int]],
    generated: list[list[int]],
    rngs: list[np.random.Generator],
    end: int,
) -> np.ndarray:
    """Every active sequence's next token (``logits`` row ``slot`` is sequence ``active[slot]``'s), appended to its
    ``generated`` unless it is ``end`` (end of text). Plain greedy decoding picks them all in one argmax."""
    if settings.do_sample or settings.repetition_penalty != 1.0:
        return np.array(
            [
                _step(settings, logits[slot], prompts[row], generated[row], rngs[row], end)
                for slot, row in enumerate(active)
            ],
            np.int64,
        )
    early = [slot for slot, row in enumerate(active) if len(generated[row]) < settings.min_new_tokens]
    if early:
        logits[early, end] = -np.inf
    chosen: np.ndarray = logits.argmax(axis=1)
    for row, token in zip(active, chosen.tolist(), strict=True):
        if token != end:
            generated[row].append(token)
    return chosen


def _step(
    settings: TextSampling,
    logits: np.ndarray,
    prompt: list[int],
    generated: list[int],
    rng: np.random.Generator,
    end: int,
) -> int:
    """Choose one sequence's next token and append it to ``generated`` unless it is ``end`` (end of text)."""
    if len(generated) < settings.min_new_tokens:
        logits[end] = -np.inf
    token = _choose(logits, prompt + generated, settings, rng)
    if token != end:
        generated.append(token)
    return token


def _made_stop(model: TextModel, stop: list[str], generated: list[int]) -> bool:
    """Whether a sequence's text so far holds one of the stop strings (it is then done)."""
    text = model.tokenizer.decode(generated)
    return any(string in text for string in stop)


def _choose(logits: np.ndarray, history: list[int], settings: TextSampling, rng: np.random.Generator) -> int:
    """Pick the next token as Hugging Face does: repetition penalty, then temperature, top-k and top-p when sampling."""
    scores = logits.astype(np.float64)
    if settings.repetition_penalty != 1.0:
        seen = np.unique(history)
        penalised = scores[seen]
        scores[seen] = np.where(
            penalised < 0, penalised * settings.repetition_penalty, penalised / settings.repetition_penalty
        )
    if not settings.do_sample:
        return int(np.argmax(scores))
    scores = scores / settings.temperature
    if settings.top_k is not None and settings.top_k < len(scores):
        threshold = np.partition(scores, -settings.top_k)[-settings.top_k]
        scores = np.where(scores < threshold, -np.inf, scores)
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    if settings.top_p < 1.0:
        order = np.argsort(-probabilities, kind="stable")
        before = np.cumsum(probabilities[order]) - probabilities[order]  # mass of the more likely tokens
        dropped = order[before >= settings.top_p]
        probabilities[dropped] = 0.0
        probabilities /= probabilities.sum()
    cumulative = np.cumsum(probabilities)
    return int(min(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"), len(cumulative) - 1))


def _cut_at_stop(text: str, stop: list[str] | None) -> str:
    cuts = [text.find(s) for s in stop or [] if s in text]
    return text[: min(cuts)] if cuts else text
