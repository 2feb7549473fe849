"""The ``audio`` kind: mono clips as float32 waveforms in [-1, 1], written as 16-bit WAV files. Imports no torch: the
runtime install makes and writes clips."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from genloom.config import StrictModel
from genloom.fileio import check_output_file
from genloom.kinds import DataKind
from genloom.results import Provenance
from genloom_audio.data import AudioData
from genloom_audio.wav import write_spectrogram, write_wav

DEFAULT_OUT = "clips"
MIN_TEMPERATURE = 1e-3
"""The smallest temperature above 0: below it the scaled logits overflow (0 itself means the likeliest level)."""
GAP_SECONDS = 0.1
"""Silence between clips when several are written into one file."""


class AudioSampling(StrictModel):
    """How many clips, how long, from which seed, of which classes, at which temperature."""

    n: int = Field(4, ge=1, le=4096, description="Number of clips.")
    seed: int | None = Field(None, ge=0, description="Seed of every draw; the same seed gives the same clips.")
    labels: list[int] | None = Field(
        None, min_length=1, description="Class labels (conditional models), repeated in turn to fill n clips."
    )
    seconds: float | None = Field(
        None, gt=0, le=600, description="Length of each clip (default: the model's clip_seconds)."
    )
    temperature: float = Field(
        1.0,
        ge=0,
        le=10,
        allow_inf_nan=False,
        description="Divide the logits by this before drawing each sample (0: the likeliest level; else 0.001 to 10).",
    )

    @field_validator("temperature")
    @classmethod
    def _not_vanishing(cls, value: float) -> float:
        if 0 < value < MIN_TEMPERATURE:
            raise ValueError(f"use 0 for the likeliest level, or at least {MIN_TEMPERATURE}")
        return value

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


@dataclass(frozen=True)
class Clips:
    """What a generator's ``sample`` (or the runtime driver) makes: ``array`` (N, T) float32, the sample rate, and
    each clip's label (None for an unconditional model)."""

    array: np.ndarray
    sample_rate: int
    labels: np.ndarray | None


@dataclass(frozen=True)
class AudioResult:
    """Generated clips: ``array`` (N, T) float32 in [-1, 1] at ``sample_rate`` Hz; ``labels`` (N,) or None."""

    array: np.ndarray
    sample_rate: int
    labels: np.ndarray | None
    provenance: Provenance

    @property
    def seconds(self) -> float:
        return self.array.shape[1] / self.sample_rate

    def to_wav(self, path: str | Path, index: int | None = None) -> Path:
        """Write clip ``index`` as a 16-bit mono WAV file, or (``None``) every clip one after another with 0.1 s of
        silence between them; atomically; return the path."""
        return write_wav(Path(path), self.joined() if index is None else self.array[index], self.sample_rate)

    def joined(self) -> np.ndarray:
        """Every clip one after another, 0.1 s of silence between them."""
        gap = np.zeros((len(self.array), int(GAP_SECONDS * self.sample_rate)), dtype=np.float32)
        return np.concatenate([self.array, gap], axis=1).reshape(-1)[: -gap.shape[1] or None]


def make_result(clips: Clips, provenance: Provenance) -> AudioResult:
    return AudioResult(np.asarray(clips.array, dtype=np.float32), clips.sample_rate, clips.labels, provenance)


def write(result: AudioResult, out: Path | None) -> str:
    """One WAV file per clip in the folder ``out`` (``clip-000.wav``, with ``-label3`` for a labelled clip); an
    ``out`` ending in ``.wav`` (the samples written during training) gets every clip in that one file, and a
    spectrogram of them beside it (``.png``)."""
    target = Path(out or DEFAULT_OUT)
    if target.suffix.lower() == ".wav":
        result.to_wav(target)
        write_spectrogram(target.with_suffix(".png"), result.joined())
        return f"wrote {len(result.array)} clips to {target} and their spectrogram to {target.with_suffix('.png')}"
    target.mkdir(parents=True, exist_ok=True)
    for index in range(len(result.array)):
        label = "" if result.labels is None else f"-label{int(result.labels[index])}"
        result.to_wav(target / f"clip-{index:03d}{label}.wav", index)
    return f"wrote {len(result.array)} clips of {result.seconds:.2f} s at {result.sample_rate} Hz to {target}/"


def check_out(out: Path) -> None:
    """An ``--out`` ending in ``.wav`` also writes the spectrogram beside it: that ``.png`` must be writable too."""
    if out.suffix.lower() == ".wav":
        check_output_file(out.with_suffix(".png"), "--out (its spectrogram)")


def compare(first: AudioResult, second: AudioResult) -> float:
    """The largest sample difference; infinite when shapes, rates or labels differ."""
    if first.labels is None or second.labels is None:
        same_labels = first.labels is None and second.labels is None
    else:
        same_labels = np.array_equal(first.labels, second.labels)
    if first.array.shape != second.array.shape or first.sample_rate != second.sample_rate or not same_labels:
        return float("inf")
    return float(np.abs(first.array - second.array).max(initial=0.0))


def to_json(result: AudioResult) -> dict[str, Any]:
    """``{"sample_rate": ..., "labels": [...] or null, "clips": [[samples], ...]}``."""
    labels = None if result.labels is None else [int(label) for label in result.labels]
    return {"sample_rate": result.sample_rate, "labels": labels, "clips": result.array.tolist()}


def evaluate(
    model: Any, data: AudioData, train: AudioData, validation: AudioData | None, *, samples: int, seed: int
) -> dict[str, Any]:
    """Spectral distance, classifier accuracy and (for note-named classes) pitch accuracy of generated clips beside
    the held-out real ones, and the real-time factor of generation."""
    from genloom.install import require_training_install
    from genloom_audio.evaluation import audio_figures

    require_training_install("evaluating audio (a scikit-learn classifier)")
    return {"figures": audio_figures(model, train, validation, samples=samples, seed=seed)}


AUDIO: DataKind[AudioSampling, Clips, AudioResult] = DataKind(
    name="audio",
    dataset=AudioData,
    sampling=AudioSampling,
    result=AudioResult,
    make_result=make_result,
    write=write,
    compare=compare,
    to_json=to_json,
    check_settings={"n": 2, "seed": 7, "seconds": 0.01},
    description="mono clips, float32 (N, T) in [-1, 1]; WAV files",
    default_out=DEFAULT_OUT,
    out_is_directory=True,
    check_out=check_out,
    sample_suffix=".wav",
    training_samples={"n": 4, "seconds": 0.25},
    count_field="n",
    bench_batches=(1, 16),
    evaluate=evaluate,
)
