"""The sampling loop that the trained model and the ONNX runtime driver share: prime each layer's queue with the
receptive field's silence, then draw one sample per step from the network's logits with the settings' seed. Only
the step itself differs (PyTorch or ONNX Runtime), so a seed gives the same clip on both."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from genloom.errors import ConfigError
from genloom.sampling import resolve_labels
from genloom_audio.kind import AudioSampling, Clips
from genloom_audio.mulaw import SILENCE, decode, draw

MAX_SAMPLES = 50_000_000
"""Samples (clips x length) one call may ask for: about 200 MB of float32."""


class StepRunner(Protocol):
    """One step of the network over a batch of streams, its per-layer queues kept inside."""

    def reset(self, labels: np.ndarray | None, batch: int) -> None:
        """Start ``batch`` streams (of ``labels`` for a conditional model) with empty queues."""

    def advance(self, levels: np.ndarray) -> np.ndarray:
        """Feed each stream's current level (B,) int64; return the logits (B, 256) of its next one."""


@dataclass(frozen=True)
class ClipFormat:
    """What every clip a model makes shares: its rate, its default length, the silence that primes the queues (the
    receptive field) and the classes it takes (0: unconditional)."""

    sample_rate: int
    clip_seconds: float
    receptive_field: int
    num_classes: int

    @classmethod
    def of(cls, facts: Mapping[str, Any]) -> ClipFormat:
        """The format a trained model's facts (``fit_data``'s) record."""
        return cls(
            int(facts["sample_rate"]),
            float(facts["clip_seconds"]),
            int(facts["receptive_field"]),
            int(facts.get("num_classes", 0)),
        )


def clip_length(settings: AudioSampling, sample_rate: int, clip_seconds: float) -> int:
    """Samples per clip for ``settings`` (``seconds``, else the model's clip length), checked against the limit."""
    length = max(1, int(round((settings.seconds or clip_seconds) * sample_rate)))
    if length * settings.n > MAX_SAMPLES:
        raise ConfigError(
            f"n x seconds: {settings.n} clips of {length} samples is more than {MAX_SAMPLES:,} samples in one call; "
            "ask for fewer or shorter clips"
        )
    return length


def labels_for(settings: AudioSampling, num_classes: int, generator: str) -> np.ndarray | None:
    """Each clip's label (the settings' labels in turn; every class in turn when none), or None if unconditional."""
    return resolve_labels(
        settings.labels, settings.n, num_classes=num_classes, conditional=num_classes > 0, generator=generator
    )


def generate_clips(
    runner: StepRunner,
    settings: AudioSampling,
    clip_format: ClipFormat,
    *,
    generator: str,
) -> Clips:
    """``settings.n`` clips: ``receptive_field - 1`` steps of silence fill the queues (as training pads each clip),
    then each step draws the next level from ``settings.rng()`` at ``settings.temperature``."""
    labels = labels_for(settings, clip_format.num_classes, generator)
    length = clip_length(settings, clip_format.sample_rate, clip_format.clip_seconds)
    rng = settings.rng()
    runner.reset(labels, settings.n)
    levels = np.full(settings.n, SILENCE, dtype=np.int64)
    for _ in range(clip_format.receptive_field - 1):
        runner.advance(levels)
    made = np.empty((settings.n, length), dtype=np.int64)
    for t in range(length):
        levels = draw(runner.advance(levels), settings.temperature, rng.random(settings.n))
        made[:, t] = levels
    return Clips(decode(made), clip_format.sample_rate, labels)
