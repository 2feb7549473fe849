"""Mu-law companding (256 levels) and the draw of the next sample from the network's logits, in numpy: the trained
model and the ONNX runtime driver draw with the same code, so a seed gives the same clip on both."""

from __future__ import annotations

import numpy as np

MU = 255
SILENCE = 128
"""The level of a zero sample: what generation starts from and clips are padded with."""


def encode(waveform: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> int64 levels 0..255."""
    x = np.clip(np.asarray(waveform, dtype=np.float64), -1.0, 1.0)
    companded = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.rint((companded + 1) / 2 * MU).astype(np.int64)


def decode(levels: np.ndarray) -> np.ndarray:
    """Int levels 0..255 -> float32 samples in [-1, 1]."""
    companded = 2 * np.asarray(levels, dtype=np.float64) / MU - 1
    return (np.sign(companded) * np.expm1(np.abs(companded) * np.log1p(MU)) / MU).astype(np.float32)


def draw(logits: np.ndarray, temperature: float, uniform: np.ndarray) -> np.ndarray:
    """The next level of each row of ``logits`` (B, 256): sampled at ``temperature`` by inverting the cumulative
    distribution at ``uniform`` (B,) in [0, 1); the most likely level at temperature 0."""
    if temperature == 0:
        return np.asarray(logits.argmax(axis=1), dtype=np.int64)
    scaled = logits.astype(np.float64) / temperature
    weights = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    cumulative = np.cumsum(weights, axis=1)
    targets = uniform * cumulative[:, -1]
    levels = (cumulative < targets[:, None]).sum(axis=1)
    return np.minimum(levels, logits.shape[1] - 1).astype(np.int64)
