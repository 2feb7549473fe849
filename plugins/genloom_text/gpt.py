"""A decoder-only transformer in the plain style of nanoGPT, with a KV cache.

Pre-LayerNorm blocks of causal multi-head self-attention and an MLP, learned
position embeddings, and an output head tied to the token embedding. Parameter
names and shapes follow GPT-2 (``wte``, ``h.N.attn.c_attn``, ...), so Hugging Face
GPT-2 weights load into it with transposes only.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

KVCache = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer, keys and values ``(B, heads, past_length, head_dim)``."""


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, bias: bool, dropout: float) -> None:
        super().__init__()
        assert width % heads == 0, "width must be a multiple of heads"
        self.heads, self.dropout = heads, dropout
        self.c_attn = nn.Linear(width, 3 * width, bias=bias)
        self.c_proj = nn.Linear(width, width, bias=bias)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Queries, keys and values of ``x`` ``(B, T, width)``, each ``(B, heads, T, head_dim)``."""
        width = x.shape[-1]
        return tuple(
            t.unflatten(-1, (self.heads, width // self.heads)).transpose(1, 2)
            for t in self.c_attn(x).split(width, dim=2)
        )

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        q, k, v = self.project(x)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        if torch.onnx.is_in_onnx_export():
            y = _explicit_attention(q, k, v, mask)
        else:
            causal = mask is None and past is None and x.shape[1] > 1
            dropout = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)
        return self.c_proj(y.transpose(1, 2).flatten(2)), (k, v)


def _explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d), masked) v, written out: what the exported graph runs.

    The exporters spell scaled_dot_product_attention with a scale computed from
    shapes at run time and a NaN guard; this form is about ten fewer ONNX nodes
    per layer, which is a third of a small model's decoding step in ONNX Runtime.
    The export always passes a mask (its ``attention_mask`` input is required).
    """
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


class MLP(nn.Module):
    def __init__(self, width: int, bias: bool, dropout: float) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width, bias=bias)
        self.c_proj = nn.Linear(4 * width, width, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, bias: bool, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, bias=bias)
        self.attn = CausalSelfAttention(width, heads, bias, dropout)
        self.ln_2 = nn.LayerNorm(width, bias=bias)
        self.mlp = MLP(width, bias, dropout)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None, mask: torch.Tensor | None):
        attended, present = self.attn(self.ln_1(x), past, mask)
        x = x + attended
        return x + self.mlp(self.ln_2(x)), present


class GPT(nn.Module):
    """Token ids -> next-token logits, with an optional KV cache and attention mask for left padding."""

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        layers: int,
        heads: int,
        width: int,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.context_length = context_length
        self.wte = nn.Embedding(vocab_size, width)
        self.wpe = nn.Embedding(context_length, width)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block(width, heads, bias, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width, bias=bias)
        self.lm_head = nn.Linear(width, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied input and output embeddings
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2's scaled init of the residual projections
                nn.init.normal_(parameter, mean=0.0, std=0.02 / (2 * layers) ** 0.5)

    @property
    def blocks(self) -> list[Block]:
        """The transformer blocks, typed (to a type checker an ``nn.ModuleList`` holds plain modules)."""
        return [cast(Block, block) for block in self.h]

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self,
        tokens: torch.Tensor,
        past: KVCache | None = None,
        attention_mask: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, KVCache]:
        """``tokens`` ``(B, T)`` after ``past`` (``P`` cached positions); ``attention_mask`` ``(B, P + T)``, 0 at
        padding.

        Returns logits ``(B, T, V)`` (``(B, 1, V)`` with ``last_only``) and the cache extended by ``T``.
        """
        length = tokens.shape[1]
        past_length = past[0][0].shape[2] if past else 0
        if not torch.jit.is_tracing() and past_length + length > self.context_length:
            raise ValueError(
                f"sequence of {past_length + length} tokens is longer than the context ({self.context_length})"
            )
        query_positions = torch.arange(length, device=tokens.device) + past_length
        mask, positions = None, query_positions[None]
        if attention_mask is not None:
            # Built from comparisons, not tril(diagonal=...), so that an exported graph stays right for every length.
            key_positions = torch.arange(attention_mask.shape[1], device=tokens.device)
            causal = key_positions[None, :] <= query_positions[:, None]
            itself = key_positions[None, :] == query_positions[:, None]  # a padded position sees itself: no empty rows
            mask = (causal[None, None] & attention_mask.bool()[:, None, None, :]) | itself[None, None]
            positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -length:]
        elif past_length and length > 1:
            key_positions = torch.arange(past_length + length, device=tokens.device)
            mask = key_positions[None, :] <= query_positions[:, None]
        x = self.drop(self.wte(tokens) + self.wpe(positions))
        presents = []
        for index, block in enumerate(self.h):
            x, present = block(x, past[index] if past else None, mask)
            presents.append(present)
        x = self.ln_f(x[:, -1:] if last_only else x)
        return self.lm_head(x), presents


class DecoderGraph(nn.Module):
    """The GPT as one ONNX decoder graph, with the input and output layout of Hugging Face optimum exports:
    ``(input_ids, attention_mask, past_key_values.0.key, past_key_values.0.value, ...)`` ->
    ``(logits, present.0.key, present.0.value, ...)``. A prompt runs with zero-length past tensors."""

    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past_flat: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        past = [(past_flat[i], past_flat[i + 1]) for i in range(0, len(past_flat), 2)]
        logits, presents = self.gpt(input_ids, past, attention_mask)
        return (logits, *[tensor for pair in presents for tensor in pair])


class InPlaceDecoderGraph(DecoderGraph):
    """What the fused decoder graph computes (``genloom_text.onnx_graph``), in torch: the parity gate's reference.

    Same names as :class:`DecoderGraph`, but the cache is a fixed-capacity buffer per
    layer, ``(B, heads, capacity, head_dim)``, that a step writes into instead of
    extending, with ONNX Runtime's ``GroupQueryAttention`` layout: each row's tokens
    sit from position 0 (prompts are padded on the right), and ``attention_mask``
    ``(B, L)`` holds each row's length (its sum, new tokens included); its width ``L``
    is at least every row's length (the runtime gives the buffer's capacity). A prompt
    (``T == L``) writes positions ``0..T-1``; a step
    after it writes row ``b``'s ``T`` new keys and values just before its length.
    Outputs the logits of every position and the buffers with the new entries; a
    buffer's positions after them come out zero when past and present are separate
    tensors (as here), and as they were when they are one buffer (as the runtime binds them).
    """

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past_flat: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        gpt, (batch, length) = self.gpt, input_ids.shape
        lengths = attention_mask.sum(-1)
        prompt = length == attention_mask.shape[1]
        starts = torch.zeros_like(lengths) if prompt else lengths - length  # where each row's new tokens go
        positions = starts[:, None] + torch.arange(length)
        capacity = past_flat[0].shape[2]
        keys = torch.arange(capacity)
        visible = keys[None, None, :] <= positions[:, :, None]  # (B, T, capacity): causal within the row
        kept = (keys[None, :] < starts[:, None])[:, None, :, None].to(past_flat[0].dtype)  # the past before them
        x = gpt.wte(input_ids) + gpt.wpe(positions)
        presents: list[torch.Tensor] = []
        rows = torch.arange(batch)[:, None]
        for index, block in enumerate(gpt.blocks):
            attention = block.attn
            q, k, v = attention.project(block.ln_1(x))
            key_cache, value_cache = past_flat[2 * index] * kept, past_flat[2 * index + 1] * kept
            key_cache[rows, :, positions] = k.transpose(1, 2)
            value_cache[rows, :, positions] = v.transpose(1, 2)
            y = F.scaled_dot_product_attention(q, key_cache, value_cache, attn_mask=visible[:, None])
            x = x + attention.c_proj(y.transpose(1, 2).flatten(2))
            x = x + block.mlp(block.ln_2(x))
            presents += [key_cache, value_cache]
        return (gpt.lm_head(gpt.ln_f(x)), *presents)
