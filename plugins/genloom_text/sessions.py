"""Decoder sessions of the torch models: the KV cache or recurrent state between generation steps."""

from __future__ import annotations

import numpy as np
import torch

from genloom_text.gpt import GPT, KVCache
from genloom_text.lstm import LSTMLanguageModel, State


class GPTSession:
    """Prefill once, then one position per step through the KV cache."""

    def __init__(self, network: GPT) -> None:
        self.network = network
        self.cache: KVCache | None = None
        self.mask: torch.Tensor | None = None

    def start(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.mask = None if mask.all() else torch.from_numpy(mask)
        logits, self.cache = self.network(torch.from_numpy(tokens), None, self.mask, last_only=True)
        return logits[:, -1].numpy()

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        if self.mask is not None:
            self.mask = torch.cat([self.mask, torch.ones(len(tokens), 1, dtype=self.mask.dtype)], dim=1)
        logits, self.cache = self.network(torch.from_numpy(tokens)[:, None], self.cache, self.mask, last_only=True)
        return logits[:, -1].numpy()

    def compact(self, rows: np.ndarray, columns: int) -> None:
        """Keep the sequences ``rows``; drop the first ``columns`` keys and values (padding for every kept row)."""
        index = torch.from_numpy(rows)
        self.cache = [(key[index, :, columns:], value[index, :, columns:]) for key, value in self.cache or []]
        if self.mask is not None:
            self.mask = self.mask[index, columns:]


class LSTMSession:
    """Prefill position by position (padding leaves the state alone), then one token per step."""

    def __init__(self, network: LSTMLanguageModel) -> None:
        self.network = network
        self.state: State | None = None

    def start(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if mask.all():
            logits, self.state = self.network(torch.from_numpy(tokens), None, last_only=True)
        else:
            logits, self.state = self.network.masked_run(torch.from_numpy(tokens), torch.from_numpy(mask))
        return logits[:, -1].numpy()

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        logits, self.state = self.network(torch.from_numpy(tokens)[:, None], self.state)
        return logits[:, -1].numpy()

    def compact(self, rows: np.ndarray, columns: int) -> None:
        """Keep the sequences ``rows``; the state holds no positions, so there are no columns to drop."""
        assert self.state is not None, "compact() before start()"
        index = torch.from_numpy(rows)
        hidden, cell = self.state
        self.state = (hidden[:, index], cell[:, index])


class RecomputingSession:
    """No cache at all: every step runs the whole sequence again. The reference the caches are
    tested against, and the baseline of ``benchmarks/text_cache.py``. Prompts must not be padded."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network
        self.tokens = torch.empty(0)

    def start(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if not mask.all():
            raise ValueError("RecomputingSession takes prompts of one length (no padding)")
        self.tokens = torch.from_numpy(tokens)
        return self._run()

    def advance(self, tokens: np.ndarray) -> np.ndarray:
        self.tokens = torch.cat([self.tokens, torch.from_numpy(tokens)[:, None]], dim=1)
        return self._run()

    def compact(self, rows: np.ndarray, columns: int) -> None:
        """Keep the sequences ``rows``, without their first ``columns`` tokens."""
        self.tokens = self.tokens[torch.from_numpy(rows), columns:]

    def _run(self) -> np.ndarray:
        logits, _ = self.network(self.tokens)
        return logits[:, -1].numpy()
