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
len(its prompt))``, its own random stream and settings, as it would alone; a
:class:`DecodingBatch` decodes sequences of any requests together (``generate``
is one request's batch; a server's batch takes requests as they come, between
steps, when its sessions are :class:`JoinableSession`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, cast

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


class JoinableSession(DecoderSession, Protocol):
    """A session that other sessions' sequences can join between steps (continuous batching)."""

    def absorb(self, other: JoinableSession) -> None:
        """Append ``other``'s sequences (started, as many steps in as they are) after this session's rows."""


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


@dataclass
class Sequence:
    """One sequence being decoded: its prompt, its budget of new tokens, its random stream and settings, what it has
    generated and the token chosen last (fed at the next step). ``greedy``, ``min_new_tokens`` and ``stop`` are read
    from the settings once, when it is made (the loop reads them at every step)."""

    prompt: list[int]
    budget: int
    rng: np.random.Generator
    settings: TextSampling
    generated: list[int] = field(default_factory=list)
    chosen: int = -1
    finished: bool = False
    greedy: bool = field(init=False)  # plain argmax: no sampling, no repetition penalty (picked batch-wise)
    min_new_tokens: int = field(init=False)
    stop: list[str] | None = field(init=False)

    def __post_init__(self) -> None:
        self.greedy = not self.settings.do_sample and self.settings.repetition_penalty == 1.0
        self.min_new_tokens, self.stop = self.settings.min_new_tokens, self.settings.stop


class DecodingBatch:
    """The sequences being decoded together, one batched step per token. ``join`` adds a request's sequences at any
    step (its prompts run in a session of their own, which the batch's session then absorbs); each sequence leaves
    when it finishes, without waiting for the others, and gets the tokens it would get alone.

    Where the rows share one cache length (a cache that grows by one column per step), a short prompt padded to a
    long one would reach the context early. So whenever rows leave, the batch compacts the session: the finished
    rows go, and so do the leading columns that are padding for every row left, so the longest row left fills the
    cache and, within its own budget, keeps it within the context. Positions come from the attention mask, so
    dropping columns that are padding for every row changes no logit.
    """

    def __init__(self, model: TextModel) -> None:
        self.model = model
        self.end_of_text = model.tokenizer.end_of_text
        self.session: DecoderSession | None = None
        self.rows: list[Sequence] = []  # the sequence in each of the session's rows
        self.cache_length = 0
        self.next_tokens: np.ndarray | None = None  # the rows' chosen tokens from one argmax; None: read the rows

    def join(self, settings: TextSampling) -> list[Sequence]:
        """Start every sequence that ``settings`` asks for and choose its first token; those that go on join the
        batch. A ConfigError (a prompt too long for the context) before anything joins."""
        (joined,) = self.join_all([settings])
        if isinstance(joined, Exception):
            raise joined
        return joined

    def join_all(self, requests: list[TextSampling]) -> list[list[Sequence] | ConfigError]:
        """``join`` for several requests at once, their prompts run in one session: each request's sequences, or
        the ConfigError that kept that request (alone) out."""
        outcomes: list[list[Sequence] | ConfigError] = []
        for settings in requests:
            try:
                prompts = encode_prompts(self.model, settings)
            except ConfigError as exc:
                outcomes.append(exc)
                continue
            copies = settings.num_return_sequences
            outcomes.append(
                [
                    Sequence(prompt, _budget(self.model, settings, prompt), settings.rng(i % copies), settings)
                    for i, prompt in enumerate(p for p in prompts for _ in range(copies))
                ]
            )
        sequences = [s for outcome in outcomes if not isinstance(outcome, ConfigError) for s in outcome]
        if sequences:
            self._start(sequences)
        return outcomes

    def _start(self, sequences: list[Sequence]) -> None:
        """Run the sequences' prompts in a session of their own, choose their first tokens, and let those that go
        on join the batch's session."""
        tokens, mask = _left_padded([s.prompt for s in sequences])
        session = self.model.session()
        _choose_all(self.model, self.end_of_text, session.start(tokens, mask), sequences)
        joined = _Joined(session, sequences, tokens.shape[1])
        joined.keep([s for s in sequences if not s.finished])
        if not joined.rows:
            return
        self.next_tokens = None  # rows join: the next step reads their tokens
        if self.session is None:
            self.session, self.rows, self.cache_length = joined.session, joined.rows, joined.cache_length
        else:
            cast(JoinableSession, self.session).absorb(cast(JoinableSession, joined.session))
            self.rows += joined.rows
            self.cache_length = max(self.cache_length, joined.cache_length)

    def step(self) -> None:
        """Feed every row's chosen token, choose the next ones, and let the finished rows go."""
        assert self.session is not None, "step() with no sequences"
        rows, fed = self.rows, self.next_tokens
        logits = self.session.advance(fed if fed is not None else np.array([s.chosen for s in rows], np.int64))
        self.cache_length += 1
        self.next_tokens, finished = _choose_all(self.model, self.end_of_text, logits, rows)
        if finished:
            self.keep([s for s in rows if not s.finished])

    def keep(self, kept: list[Sequence]) -> None:
        """Keep only the rows ``kept`` (in their order); the others leave the batch."""
        if len(kept) == len(self.rows):
            return
        self.next_tokens = None
        if not kept:
            self.session, self.rows, self.cache_length = None, [], 0
            return
        _compact(self, kept)


@dataclass
class _Joined:
    """A request's own session while it joins a batch."""

    session: DecoderSession
    rows: list[Sequence]
    cache_length: int

    def keep(self, kept: list[Sequence]) -> None:
        if kept and len(kept) < len(self.rows):
            _compact(self, kept)
        self.rows = kept


def _compact(batch: DecodingBatch | _Joined, kept: list[Sequence]) -> None:
    """Keep the columns of the longest kept row's prompt and fed tokens (its last chosen token is not fed yet). That
    row then fills the cache, and within its own budget it stays within the context."""
    assert batch.session is not None
    slots = {id(s): slot for slot, s in enumerate(batch.rows)}
    needed = max(len(s.prompt) + len(s.generated) - 1 for s in kept)
    batch.session.compact(np.array([slots[id(s)] for s in kept], np.int64), batch.cache_length - needed)
    batch.rows, batch.cache_length = kept, needed


def generate(model: TextModel, settings: TextSampling) -> Decoded:
    """Generate every sequence that ``settings`` asks for."""
    final: list[list[int]] = []
    for final in _decode(model, settings):  # noqa: B007 - each step extends the same lists; keep the last
        pass
    return decoded(model, settings, final)


def decoded(model: TextModel, settings: TextSampling, tokens: list[list[int]]) -> Decoded:
    """The generated sequences' texts (cut at the first stop string) beside their tokens."""
    return Decoded([_cut_at_stop(model.tokenizer.decode(ids), settings.stop) for ids in tokens], tokens)


def stream(model: TextModel, settings: TextSampling) -> Iterator[str]:
    """Yield one sequence's new text piece by piece, as its tokens are decoded."""
    check_streamable(settings)
    yield from pieces(model, settings, _decode(model, settings))


def check_streamable(settings: TextSampling) -> None:
    """A stream is of one sequence: one prompt, ``num_return_sequences=1``."""
    if len(settings.prompts) * settings.num_return_sequences != 1:
        raise ConfigError("stream: give one prompt and num_return_sequences=1 (use generate for batches)")


def pieces(model: TextModel, settings: TextSampling, steps: Iterable[list[list[int]]]) -> Iterator[str]:
    """One sequence's new text piece by piece, from its tokens after each step."""
    cutter = TextPieces(model, settings)
    for new_tokens in steps:
        piece = cutter.feed(new_tokens[0])
        if piece:
            yield piece
    last = cutter.end()
    if last:
        yield last


class TextPieces:
    """Cuts one sequence's text into the pieces that are ready as its tokens come: text that may begin a stop string
    is held back until it does not, and so is half of a multi-byte character."""

    def __init__(self, model: TextModel, settings: TextSampling) -> None:
        self.tokenizer, self.stop = model.tokenizer, settings.stop
        self.hold_back = max((len(s) for s in settings.stop or []), default=1) - 1
        self.emitted = ""
        self.text = ""

    def feed(self, tokens: list[int]) -> str:
        """The new text that is ready, given the sequence's tokens so far ("" for none)."""
        self.text = self.tokenizer.decode(tokens)
        if self.text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            return ""
        ready = _cut_at_stop(self.text, self.stop)[: max(len(self.emitted), len(self.text) - self.hold_back)]
        return self._emit(ready)

    def end(self) -> str:
        """The text held back until the sequence ended ("" for none)."""
        return self._emit(_cut_at_stop(self.text, self.stop))

    def _emit(self, ready: str) -> str:
        if len(ready) <= len(self.emitted):
            return ""
        piece, self.emitted = ready[len(self.emitted) :], ready
        return piece


def encode_prompts(model: TextModel, settings: TextSampling) -> list[list[int]]:
    """Each prompt's token ids (after ``<|endoftext|>`` where the model starts documents with it); a ConfigError for
    one the context cannot hold."""
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
    batch = DecodingBatch(model)
    sequences = batch.join(settings)
    generated = [s.generated for s in sequences]
    yield generated
    while batch.rows:
        batch.step()
        yield generated


def _choose_all(model: TextModel, end: int, logits: np.ndarray, rows: list[Sequence]) -> tuple[np.ndarray | None, bool]:
    """Every row's next token (``logits`` row ``slot`` is ``rows[slot]``'s), appended to its ``generated`` unless it
    is end of text (``end``); rows that end, fill their budget or make a stop string are marked finished. Plain greedy
    rows are picked in one argmax. The chosen tokens as an array when that argmax chose them all (else None), and
    whether any row finished."""
    picked = None
    greedy = [slot for slot, s in enumerate(rows) if s.greedy]
    if greedy:
        held = [slot for slot in greedy if len(rows[slot].generated) < rows[slot].min_new_tokens]
        if held:
            logits[held, end] = -np.inf
        picked = logits.argmax(axis=1) if len(greedy) == len(rows) else logits[greedy].argmax(axis=1)
        for slot, token in zip(greedy, picked.tolist(), strict=True):
            rows[slot].chosen = token
    if len(greedy) < len(rows):
        for slot, row in enumerate(rows):
            if not row.greedy:
                row.chosen = _pick(row, logits[slot], end)
    any_finished = False
    for row in rows:
        generated = row.generated
        if row.chosen == end:
            row.finished = True
        else:
            generated.append(row.chosen)
            row.finished = len(generated) >= row.budget or bool(row.stop and _made_stop(model, row.stop, generated))
        any_finished |= row.finished
    return (picked if len(greedy) == len(rows) else None), any_finished


def _pick(row: Sequence, logits: np.ndarray, end: int) -> int:
    """One row's next token by its own settings."""
    if len(row.generated) < row.min_new_tokens:
        logits[end] = -np.inf
    return _choose(logits, row.prompt + row.generated, row.settings, row.rng)


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
