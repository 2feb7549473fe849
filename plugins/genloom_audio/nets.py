"""The WaveNet in PyTorch, after van den Oord et al. (2016): stacks of dilated causal convolutions with gated
activations, residual and skip connections, optional global conditioning on a class label, and a 256-way softmax over
mu-law levels.

Two ways to run it: ``WaveNet.forward`` over whole sequences (training, and the naive sampler that re-runs the
receptive field for every sample), and ``WaveNetStep``, one sample at a time with a queue of past inputs per layer
("fast WaveNet", Paine et al. 2016): each new sample costs one step of each layer, as a KV cache does for a
transformer. The step is what sampling runs and what the ONNX export holds.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 256
"""Mu-law levels: the classes of the output softmax and of the input embedding."""


class ResidualLayer(nn.Module):
    """One dilated causal convolution (kernel 2) with a gated activation, a skip output and (but for the last layer,
    whose residual nothing reads) a residual output."""

    def __init__(self, residual: int, gate: int, skip: int, dilation: int, *, last: bool = False) -> None:
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv1d(residual, 2 * gate, kernel_size=2, dilation=dilation)
        self.residual = None if last else nn.Conv1d(gate, residual, kernel_size=1)
        self.skip = nn.Conv1d(gate, skip, kernel_size=1)

    def forward(self, h: torch.Tensor, condition: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` (B, residual, T) -> (next h, skip), both over the same T steps (zero-padded on the left)."""
        x = self.conv(F.pad(h, (self.dilation, 0)))
        if condition is not None:
            x = x + condition[:, :, None]
        filt, gate = x.chunk(2, dim=1)
        z = torch.tanh(filt) * torch.sigmoid(gate)
        return (h if self.residual is None else h + self.residual(z)), self.skip(z)


class WaveNet(nn.Module):
    """Mu-law tokens (B, T) int64 (and labels (B,) int64 when ``num_classes``) -> logits (B, 256, T): at each step
    the distribution of the next sample."""

    def __init__(self, *, residual: int, gate: int, skip: int, dilations: list[int], num_classes: int = 0) -> None:
        super().__init__()
        self.dilations = list(dilations)
        self.embed = nn.Embedding(LEVELS, residual)
        self.layers = nn.ModuleList(
            ResidualLayer(residual, gate, skip, d, last=i == len(self.dilations) - 1)
            for i, d in enumerate(self.dilations)
        )
        self.num_classes = num_classes
        self.condition = nn.Embedding(num_classes, 2 * gate * len(self.dilations)) if num_classes else None
        self.head_in = nn.Conv1d(skip, skip, 1)
        self.head_out = nn.Conv1d(skip, LEVELS, 1)

    @property
    def residual_layers(self) -> list[ResidualLayer]:
        return cast(list[ResidualLayer], list(self.layers))

    @property
    def receptive_field(self) -> int:
        """Samples each output sees: the current one and ``sum(dilations)`` before it."""
        return 1 + sum(self.dilations)

    def conditions(self, labels: torch.Tensor | None) -> list[torch.Tensor | None]:
        """Each layer's gate bias for ``labels`` (B,), or None per layer for an unconditional model."""
        if self.condition is None:
            return [None] * len(self.layers)
        if labels is None:
            raise ValueError("this WaveNet is conditional: give labels")
        return list(self.condition(labels).chunk(len(self.layers), dim=1))

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(tokens).transpose(1, 2)
        skips = torch.zeros((), dtype=h.dtype, device=h.device)
        for layer, condition in zip(self.layers, self.conditions(labels), strict=True):
            h, skip = layer(h, condition)
            skips = skips + skip
        logits: torch.Tensor = self.head_out(torch.relu(self.head_in(torch.relu(skips))))
        return logits


class WaveNetStep(nn.Module):
    """One sample of a :class:`WaveNet`: ``(token (B,), [label (B,)], queue_0, ..., queue_{L-1})`` ->
    ``(logits (B, 256), next queue_0, ...)``. Queue ``i`` (B, residual, dilation_i) holds layer ``i``'s inputs of
    the last ``dilation_i`` steps, oldest first; all zeros before the first step.

    It holds the network's weights rearranged for one step (taken when it is made, so make it after training): each
    layer's two convolution taps as one matrix over ``[past, now]``, the label's gate bias added to the convolution's
    bias, 1x1 convolutions as matrices, and every layer's skip matrix stacked into one product at the end.
    """

    embed: torch.Tensor
    biases: torch.Tensor
    taps: torch.Tensor
    residuals: torch.Tensor
    residual_biases: torch.Tensor
    skips: torch.Tensor
    skip_bias: torch.Tensor
    head_in: torch.Tensor
    head_in_bias: torch.Tensor
    head_out: torch.Tensor
    head_out_bias: torch.Tensor

    def __init__(self, net: WaveNet) -> None:
        super().__init__()
        self.conditional = net.condition is not None
        self.dilations = list(net.dilations)
        layers = net.residual_layers
        self.gate = layers[0].conv.out_channels // 2
        self.width = net.embed.embedding_dim
        with torch.no_grad():
            biases = torch.stack([layer.conv.bias for layer in layers])  # type: ignore[misc]
            if net.condition is not None:
                biases = biases + net.condition.weight.view(net.num_classes, len(layers), -1)
            self.register_buffer("embed", net.embed.weight.clone())
            self.register_buffer("biases", biases.clone())  # (classes, layers, 2 gate), or (layers, 2 gate)
            self.register_buffer("taps", torch.stack([_taps(layer.conv.weight) for layer in layers]))
            self.register_buffer(
                "residuals", torch.stack([_matrix(layer.residual) for layer in layers if layer.residual is not None])
            )
            self.register_buffer(
                "residual_biases",
                torch.stack([layer.residual.bias for layer in layers if layer.residual is not None]),  # type: ignore[misc]
            )
            self.register_buffer("skips", torch.cat([_matrix(layer.skip) for layer in layers]))
            self.register_buffer("skip_bias", torch.stack([layer.skip.bias for layer in layers]).sum(0))  # type: ignore[misc]
            self.register_buffer("head_in", _matrix(net.head_in))
            self.register_buffer("head_in_bias", net.head_in.bias.clone())  # type: ignore[union-attr]
            self.register_buffer("head_out", _matrix(net.head_out))
            self.register_buffer("head_out_bias", net.head_out.bias.clone())  # type: ignore[union-attr]

    def forward(self, token: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        labels, queues = (rest[0], rest[1:]) if self.conditional else (None, rest)
        biases = self.biases[labels] if labels is not None else self.biases[None]
        h = self.embed[token]
        gated, updated = [], []
        for i, queue in enumerate(queues):
            updated.append(torch.cat([queue[:, :, 1:], h[:, :, None]], dim=2))
            x = torch.cat([queue[:, :, 0], h], dim=1) @ self.taps[i] + biases[:, i]
            z = torch.tanh(x[:, : self.gate]) * torch.sigmoid(x[:, self.gate :])
            gated.append(z)
            if i < len(self.residuals):
                h = h + torch.addmm(self.residual_biases[i], z, self.residuals[i])
        skips = torch.addmm(self.skip_bias, torch.cat(gated, dim=1), self.skips)
        hidden = torch.relu(torch.addmm(self.head_in_bias, torch.relu(skips), self.head_in))
        logits = torch.addmm(self.head_out_bias, hidden, self.head_out)
        return (logits, *updated)

    def empty_queues(self, batch: int) -> list[torch.Tensor]:
        """The queues before the first step: zeros."""
        return [torch.zeros(batch, self.width, d) for d in self.dilations]


def _taps(weight: torch.Tensor) -> torch.Tensor:
    """A kernel-2 convolution's weight (out, in, 2) as one (2 in, out) matrix over ``[past, now]``."""
    return torch.cat([weight[:, :, 0].T, weight[:, :, 1].T], dim=0).clone()


def _matrix(conv: nn.Conv1d) -> torch.Tensor:
    """A 1x1 convolution's weight (out, in, 1) as an (in, out) matrix."""
    return conv.weight[:, :, 0].T.clone()


class TorchStepRunner:
    """:class:`WaveNetStep` behind the sampler's ``StepRunner`` protocol: numpy in and out, queues kept as tensors."""

    def __init__(self, net: WaveNet) -> None:
        self.step = WaveNetStep(net)
        self.queues: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def reset(self, labels: np.ndarray | None, batch: int) -> None:
        self.queues = self.step.empty_queues(batch)
        self.labels = [torch.from_numpy(np.asarray(labels))] if self.step.conditional else []

    def advance(self, levels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            outputs = self.step(torch.from_numpy(np.asarray(levels)), *self.labels, *self.queues)
        self.queues = list(outputs[1:])
        logits: np.ndarray = outputs[0].numpy()
        return logits


class NaiveStepRunner:
    """The naive sampler, for reference and benchmarks: every step re-runs the whole network over the last
    ``receptive_field`` levels and keeps the last position's logits. Same protocol, same results as
    :class:`TorchStepRunner`, one full receptive field of work per sample."""

    def __init__(self, net: WaveNet) -> None:
        self.net = net
        self.history = torch.zeros(0, net.receptive_field, dtype=torch.int64)
        self.labels: torch.Tensor | None = None

    def reset(self, labels: np.ndarray | None, batch: int) -> None:
        from genloom_audio.mulaw import SILENCE

        self.history = torch.full((batch, self.net.receptive_field), SILENCE, dtype=torch.int64)
        self.labels = None if self.net.condition is None else torch.from_numpy(np.asarray(labels))

    def advance(self, levels: np.ndarray) -> np.ndarray:
        self.history = torch.cat([self.history[:, 1:], torch.from_numpy(np.asarray(levels))[:, None]], dim=1)
        with torch.inference_mode():
            logits: np.ndarray = self.net(self.history, self.labels)[:, :, -1].numpy()
        return logits
