"""The built-in ``notes`` source: synthetic but non-trivial labelled clips, made from a fixed seed with no download.

Each clip is one note of the C major scale from C4 to C5 (the label), with its own timbre (the strength of each
harmonic, odd harmonics only for some), detuning, vibrato, an attack-decay-sustain-release envelope, a level and
background noise: a model must learn pitch apart from everything else that varies.
"""

from __future__ import annotations

import numpy as np

NOTES = {"C4": 261.63, "D4": 293.66, "E4": 329.63, "F4": 349.23, "G4": 392.00, "A4": 440.00, "B4": 493.88, "C5": 523.25}
"""Label names and their fundamental frequencies (Hz)."""
CLIPS_PER_NOTE = 64
SEED = 20241204


def synthesize_notes(
    sample_rate: int, seconds: float, clips_per_note: int = CLIPS_PER_NOTE
) -> tuple[np.ndarray, np.ndarray]:
    """``(clips (N, T) float32 in [-1, 1], labels (N,) int64)``, the same every call for the same arguments."""
    rng = np.random.default_rng(SEED)
    length = int(round(sample_rate * seconds))
    t = np.arange(length) / sample_rate
    clips, labels = [], []
    for label, frequency in enumerate(NOTES.values()):
        for _ in range(clips_per_note):
            clips.append(_note(rng, frequency, t, sample_rate))
            labels.append(label)
    order = rng.permutation(len(clips))
    return np.stack(clips)[order].astype(np.float32), np.array(labels, dtype=np.int64)[order]


def _note(rng: np.random.Generator, frequency: float, t: np.ndarray, sample_rate: int) -> np.ndarray:
    detune = 2 ** (rng.uniform(-10, 10) / 1200)
    vibrato_cents = rng.uniform(0, 15) * np.sin(2 * np.pi * rng.uniform(4, 6) * t + rng.uniform(0, 2 * np.pi))
    instantaneous = frequency * detune * 2 ** (vibrato_cents / 1200)
    phase = 2 * np.pi * np.cumsum(instantaneous) / sample_rate + rng.uniform(0, 2 * np.pi)
    odd_only = rng.random() < 0.3
    decay = rng.uniform(0.25, 0.6)
    wave = np.zeros_like(t)
    for harmonic in range(1, 7):
        if odd_only and harmonic % 2 == 0 or harmonic * frequency > 0.45 * sample_rate:
            continue
        wave += decay ** (harmonic - 1) * rng.uniform(0.7, 1.0) * np.sin(harmonic * phase)
    wave /= np.abs(wave).max()
    wave = wave * _envelope(rng, t) * rng.uniform(0.3, 0.8)
    return np.clip(wave + rng.uniform(0.001, 0.005) * rng.standard_normal(len(t)), -1, 1)


def _envelope(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Attack, decay to a sustain level, release over the last part of the clip."""
    duration = t[-1] if len(t) else 0.0
    attack, decay, release = rng.uniform(0.002, 0.015), rng.uniform(0.05, 0.15), rng.uniform(0.03, 0.08)
    sustain = rng.uniform(0.5, 0.9)
    rise = np.clip(t / attack, 0, 1)
    fall = sustain + (1 - sustain) * np.exp(-np.maximum(t - attack, 0) / decay)
    tail = np.clip((duration - t) / release, 0, 1)
    return rise * fall * tail
