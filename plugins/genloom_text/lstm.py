"""A multi-layer LSTM language model; its recurrent state plays the part of the GPT's KV cache."""

from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]
"""Hidden and cell state, each ``(layers, B, width)``."""


class LSTMLanguageModel(nn.Module):
    """Token ids -> next-token logits; the output head is tied to the token embedding."""

    def __init__(self, vocab_size: int, layers: int, width: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab_size, width)
        self.lstm = nn.LSTM(width, width, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.lm_head = nn.Linear(width, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)

    def forward(
        self, tokens: torch.Tensor, state: State | None = None, last_only: bool = False
    ) -> tuple[torch.Tensor, State]:
        """``tokens`` ``(B, T)`` after ``state``; logits ``(B, T, V)`` (``(B, 1, V)`` with ``last_only``) and the
        new state."""
        output, state = self.lstm(self.wte(tokens), state)
        return self.lm_head(output[:, -1:] if last_only else output), state

    def masked_run(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Run left-padded prompts one position at a time; where ``mask`` is 0 the state stays as it was (zeros)."""
        batch = tokens.shape[0]
        zeros = torch.zeros(self.lstm.num_layers, batch, self.lstm.hidden_size)
        state: State = (zeros, zeros.clone())
        logits = torch.empty(0)
        for position in range(tokens.shape[1]):
            logits, new_state = self(tokens[:, position : position + 1], state)
            keep = mask[:, position].bool()[None, :, None]
            state = (torch.where(keep, new_state[0], state[0]), torch.where(keep, new_state[1], state[1]))
        return logits, state


class RecurrentGraph(nn.Module):
    """The LSTM as one ONNX graph: ``(input_ids, state.h, state.c)`` -> ``(logits, present_state.h,
    present_state.c)``."""

    def __init__(self, model: LSTMLanguageModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, (hidden, cell) = self.model(input_ids, (hidden, cell))
        return logits, hidden, cell
