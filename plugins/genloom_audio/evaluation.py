"""What ``genloom eval`` measures on generated clips, each beside the same figure for held-out real clips:

- ``stft_distance``: the multi-resolution STFT distance (FFT sizes 256, 512 and 1024, hop a quarter) from each
  generated clip to the held-out clips of its class (all of them when unlabelled), averaged; at each resolution the
  spectral convergence plus the mean absolute log difference of the two clips' frame-averaged magnitudes, so that
  clips are compared by what they sound like rather than sample by sample. ``real_stft_distance`` is the same from
  training clips (of the same classes) to the held-out ones.
- ``label_accuracy``: a logistic regression on peak-relative log spectra (floored 40 dB down), trained on the
  training clips, names the class of each generated clip; the share it names as requested (``real_``: held-out
  clips).
- ``pitch_accuracy`` and ``pitch_error_cents``, where every class is named after a note (``C4``, ``F#3``, ...): the
  dominant frequency of each clip against its note's, within 50 cents (half a semitone), and the median absolute
  error.
- ``realtime_factor``: seconds of generation per second of audio made (below 1: faster than real time).
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np

from genloom_audio.data import AudioData, check_classes

RESOLUTIONS = (256, 512, 1024)
CLASSIFIER_FFT = 1024
CLASSIFIER_FLOOR = 1e-2
PITCH_TOLERANCE_CENTS = 50.0
_NOTE = re.compile(r"^([A-G])([#b]?)(-?\d)$")
_SEMITONES = {"C": -9, "D": -7, "E": -5, "F": -4, "G": -2, "A": 0, "B": 2}


def audio_figures(
    model: Any, train: AudioData, validation: AudioData | None, *, samples: int, seed: int
) -> dict[str, float]:
    """The figures above for as many generated clips as there are held-out ones (at most ``samples``)."""
    from genloom.errors import DataError

    if validation is None:
        raise DataError(
            f"'{train.source}' has too few clips to hold any out; evaluate on more clips (or train with a larger "
            "validation_fraction)"
        )
    check_classes(list(model.manifest.facts.get("class_names") or []), train, model.manifest.generator)
    rate = int(model.manifest.facts["sample_rate"])
    held_out, reference = validation.at_rate(rate), train.at_rate(rate)
    count = min(samples, len(held_out))
    conditional = int(model.manifest.facts.get("num_classes", 0)) > 0
    labels = held_out.labels[:count] if conditional and held_out.labels is not None else None
    started = time.perf_counter()
    made = model.generate(n=count, seed=seed, **({"labels": labels.tolist()} if labels is not None else {}))
    elapsed = time.perf_counter() - started
    real = _like(reference, labels, count)
    figures = {
        "stft_distance": set_distance(list(made.array), labels, held_out),
        "real_stft_distance": set_distance(real.clips, real.labels if labels is not None else None, held_out),
        "realtime_factor": elapsed / (made.array.size / rate),
    }
    if labels is not None and reference.labels is not None:
        if len(np.unique(reference.labels)) > 1:  # a classifier needs two classes to tell apart
            classifier = fit_classifier(reference)
            figures["label_accuracy"] = float((classifier.predict(features(list(made.array))) == labels).mean())
            real_predicted = classifier.predict(features(held_out.clips[:count]))
            figures["real_label_accuracy"] = float((real_predicted == labels).mean())
        notes = [note_frequency(name) for name in (train.class_names or [])]
        if notes and all(frequency is not None for frequency in notes):
            targets = np.array(notes, dtype=np.float64)[labels]
            for prefix, clips in (("", list(made.array)), ("real_", held_out.clips[:count])):
                errors = np.abs(
                    [cents(dominant_frequency(clip, rate), target) for clip, target in zip(clips, targets, strict=True)]
                )
                figures[f"{prefix}pitch_accuracy"] = float((errors <= PITCH_TOLERANCE_CENTS).mean())
                figures[f"{prefix}pitch_error_cents"] = float(np.median(errors))
    return figures


def _like(data: AudioData, labels: np.ndarray | None, count: int) -> AudioData:
    """``count`` clips of ``data`` with the given labels in turn (the first ones of each class), or the first ones."""
    if labels is None or data.labels is None:
        return data.subset(np.arange(min(count, len(data))), data.part)
    taken: dict[int, int] = {}
    rows = []
    for label in labels:
        candidates = np.flatnonzero(data.labels == label)
        if len(candidates):
            rows.append(int(candidates[taken.get(int(label), 0) % len(candidates)]))
            taken[int(label)] = taken.get(int(label), 0) + 1
    return data.subset(np.array(rows, dtype=np.int64), data.part)


def average_spectrum(clip: np.ndarray, n_fft: int) -> np.ndarray:
    """Frame-averaged magnitude of a Hann-windowed STFT (hop ``n_fft / 4``)."""
    padded = np.pad(np.asarray(clip, dtype=np.float64), (0, max(0, n_fft - len(clip))))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[:: n_fft // 4]
    return np.asarray(np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)).mean(axis=0))


def stft_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Multi-resolution distance of two clips' frame-averaged spectra (0 for the same spectrum)."""
    total = 0.0
    for n_fft in RESOLUTIONS:
        a, b = average_spectrum(first, n_fft), average_spectrum(second, n_fft)
        convergence = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-8)
        total += convergence + float(np.abs(np.log(a + 1e-5) - np.log(b + 1e-5)).mean())
    return total / len(RESOLUTIONS)


def set_distance(clips: list[np.ndarray], labels: np.ndarray | None, reference: AudioData) -> float:
    """Mean over ``clips`` of the mean distance to the reference clips of the same label (all, when unlabelled)."""
    distances: list[float] = []
    for index, clip in enumerate(clips):
        if labels is not None and reference.labels is not None:
            pool = [c for c, label in zip(reference.clips, reference.labels, strict=True) if label == labels[index]]
        else:
            pool = reference.clips
        distances.extend(stft_distance(clip, other) for other in pool)
    return float(np.mean(distances))


def features(clips: list[np.ndarray]) -> np.ndarray:
    """Each clip's frame-averaged log spectrum relative to its peak, floored 40 dB below it: blind to the level and
    to the noise floor, which a model need not copy to sound its class."""
    spectra = [average_spectrum(clip, CLASSIFIER_FFT) for clip in clips]
    return np.stack([np.log(np.maximum(s / max(s.max(), 1e-12), CLASSIFIER_FLOOR)) for s in spectra])


def fit_classifier(data: AudioData) -> Any:
    """A logistic regression on standardised log spectra of ``data``'s clips and labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features(data.clips), data.labels)


def note_frequency(name: str) -> float | None:
    """The frequency of a note name in scientific pitch notation (``A4`` = 440 Hz, ``C#5``, ``Bb3``), else None."""
    match = _NOTE.match(name)
    if match is None:
        return None
    letter, accidental, octave = match.groups()
    semitones = _SEMITONES[letter] + {"#": 1, "b": -1, "": 0}[accidental] + 12 * (int(octave) - 4)
    return 440.0 * 2 ** (semitones / 12)


def dominant_frequency(clip: np.ndarray, rate: int) -> float:
    """The frequency (Hz, above 40 Hz) of the strongest peak of the clip's spectrum, zero-padded 8x."""
    size = 8 * len(clip)
    spectrum = np.abs(np.fft.rfft(np.asarray(clip, dtype=np.float64) * np.hanning(len(clip)), n=size))
    frequencies = np.fft.rfftfreq(size, 1 / rate)
    audible = frequencies > 40
    return float(frequencies[audible][spectrum[audible].argmax()])


def cents(frequency: float, target: float) -> float:
    return float(1200 * np.log2(max(frequency, 1e-9) / target))
