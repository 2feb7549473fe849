"""WAV files and spectrogram pictures, with the standard library, numpy and Pillow: the runtime install writes them
without torch or scipy."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
from PIL import Image

from genloom.fileio import atomic_path

SPECTROGRAM_FFT, SPECTROGRAM_HOP = 512, 128
_COLOURS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)
"""Anchors of the spectrogram's colour map, quiet to loud (close to matplotlib's inferno)."""


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono float samples in [-1, 1] as a 16-bit PCM WAV file (atomically); return the path."""
    pcm = np.rint(np.clip(samples, -1, 1) * 32767).astype("<i2")
    with atomic_path(Path(path)) as tmp, wave.open(str(tmp), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(int(sample_rate))
        handle.writeframes(pcm.tobytes())
    return Path(path)


def log_spectrogram(samples: np.ndarray, n_fft: int = SPECTROGRAM_FFT, hop: int = SPECTROGRAM_HOP) -> np.ndarray:
    """Magnitude in dB, (frequencies, frames), of a Hann-windowed short-time Fourier transform."""
    padded = np.pad(np.asarray(samples, dtype=np.float64), (0, max(0, n_fft - len(samples))))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    magnitude = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)).T
    return np.asarray(20 * np.log10(magnitude + 1e-5))


def write_spectrogram(path: Path, samples: np.ndarray) -> Path:
    """A PNG of ``samples``' spectrogram (low frequencies at the bottom, 80 dB of range), atomically."""
    decibels = log_spectrogram(samples)[::-1]
    level = np.clip((decibels - decibels.max() + 80) / 80, 0, 1) * (len(_COLOURS) - 1)
    low = np.floor(level).astype(int).clip(0, len(_COLOURS) - 2)
    weight = (level - low)[..., None]
    rgb = (_COLOURS[low] * (1 - weight) + _COLOURS[low + 1] * weight).astype(np.uint8)
    with atomic_path(Path(path)) as tmp:
        Image.fromarray(rgb, "RGB").save(tmp, format="PNG")
    return Path(path)
