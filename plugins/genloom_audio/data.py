"""Audio as training data: :class:`AudioData`, and the ``wav-folder:PATH`` and ``notes`` sources. Nothing is
downloaded: ``notes`` is synthesised from a fixed seed."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from typing_extensions import Self

from genloom.data import DataSource
from genloom.data.folders import labelled_files
from genloom.errors import DataError
from genloom_audio.notes import NOTES, synthesize_notes

log = logging.getLogger(__name__)

SPLIT_SEED = 20241204
"""Seed of the train/held-out split of clips: fixed, so that training and `genloom eval` hold out the same clips."""
NOTES_RATE, NOTES_SECONDS = 16_000, 0.5
"""The ``notes`` clips: 16 kHz, half a second each."""


@dataclass
class AudioData:
    """Mono clips at one ``sample_rate``, float32 in [-1, 1] (lengths may differ); ``labels`` (one class index per
    clip, from the class names' order) or None."""

    clips: list[np.ndarray]
    sample_rate: int
    source: str
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    names: list[str] = field(default_factory=list)
    """Where each clip came from (file paths), for messages."""
    part: str = "all"
    modality: ClassVar[str] = "audio"

    def __post_init__(self) -> None:
        if not self.clips:
            raise DataError(f"data source '{self.source}' holds no clips; give at least one WAV file")
        self.clips = [np.ascontiguousarray(clip, dtype=np.float32) for clip in self.clips]
        self.names = self.names or [f"clip {i}" for i in range(len(self.clips))]
        for name, clip in zip(self.names, self.clips, strict=True):
            if clip.ndim != 1 or len(clip) == 0 or not np.isfinite(clip).all():
                raise DataError(f"data source '{self.source}': {name} is empty or not finite; remove it")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names and self.labels is not None else 0

    def facts(self) -> dict[str, Any]:
        lengths = [len(clip) for clip in self.clips]
        return {
            "sample_rate": self.sample_rate,
            "clips": len(self.clips),
            "clip_seconds": float(np.median(lengths)) / self.sample_rate,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names or []) if self.num_classes else [],
        }

    def split(self, fraction: float) -> tuple[Self, Self | None]:
        """The same clips held out every time: a fixed shuffle, then ``round(fraction * clips)`` of them."""
        held_out = int(round(len(self) * fraction))
        if held_out == 0 or held_out >= len(self):
            return self, None
        order = np.random.default_rng(SPLIT_SEED).permutation(len(self))
        return self.subset(order[held_out:], "train"), self.subset(order[:held_out], "validation")

    def subset(self, rows: np.ndarray, part: str) -> Self:
        """The clips at ``rows`` (with their labels and names), as the given ``part``."""
        return type(self)(
            [self.clips[i] for i in rows],
            self.sample_rate,
            self.source,
            None if self.labels is None else self.labels[rows],
            self.class_names,
            [self.names[i] for i in rows],
            part,
        )

    def at_rate(self, sample_rate: int) -> Self:
        """The same clips resampled to ``sample_rate`` (itself when it already is)."""
        if sample_rate == self.sample_rate:
            return self
        clips = [resample(clip, self.sample_rate, sample_rate) for clip in self.clips]
        return type(self)(clips, sample_rate, self.source, self.labels, self.class_names, self.names, self.part)


def check_classes(trained: list[str], data: AudioData, generator: str) -> None:
    """A model conditional on the classes ``trained`` is evaluated on labelled data of those classes, in that order;
    a DataError otherwise (an unconditional model, ``trained`` empty, takes any data)."""
    if not trained:
        return
    held = list(data.class_names or []) if data.labels is not None else []
    if not held:
        raise DataError(
            f"'{generator}' is conditional on the classes {trained}, but '{data.source}' has no labels; evaluate on "
            "labelled data of those classes (one sub-folder per class)"
        )
    if held != trained:
        raise DataError(
            f"'{generator}' was trained on the classes {trained}, but '{data.source}' holds {held}; evaluate on "
            "data of the same classes (the same sub-folder names)"
        )


def resample(clip: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``clip`` at ``rate`` Hz -> at ``target`` Hz (polyphase filtering)."""
    from scipy.signal import resample_poly

    common = gcd(rate, target)
    return np.clip(resample_poly(clip, target // common, rate // common), -1, 1).astype(np.float32)


def load_notes(argument: str | None) -> AudioData:
    """``notes``: 64 half-second clips of each of the 8 notes of C major from C4 to C5 (labels), 16 kHz."""
    clips, labels = synthesize_notes(NOTES_RATE, NOTES_SECONDS)
    return AudioData(list(clips), NOTES_RATE, "notes", labels, list(NOTES))


def load_wav_folder(argument: str | None) -> AudioData:
    """``wav-folder:PATH``: WAV files in PATH, or in class sub-folders of PATH (one label per folder). Stereo is
    mixed down; every file takes the folder's most common sample rate (a note says which were converted)."""
    root = Path(argument or "")
    found = labelled_files(root, (".wav",), source="wav-folder", what=".wav files")
    files = found.files
    read = [_read_wav(file) for file in files]
    rates = [rate for _, rate, _ in read]
    rate = max(set(rates), key=lambda r: (rates.count(r), r))
    clips = []
    for file, (clip, clip_rate, channels) in zip(files, read, strict=True):
        if channels > 1 or clip_rate != rate:
            log.warning("wav-folder: %s %s", file, _conversion(channels, clip_rate, rate))
        clips.append(resample(clip, clip_rate, rate))
    names = [str(file) for file in files]
    return AudioData(clips, rate, f"wav-folder:{root}", found.labels, found.class_names, names)


def _conversion(channels: int, rate: int, target: int) -> str:
    """What happened to a file of ``channels`` at ``rate`` Hz in a folder of ``target`` Hz, for its note."""
    layout = "stereo" if channels == 2 else f"{channels} channels" if channels > 1 else "mono"
    done = ["mixed down to mono"] if channels > 1 else []
    if rate != target:
        done.append(f"resampled to {target} Hz (the folder's most common rate)")
    return f"is {layout} at {rate} Hz; {', '.join(done)}"


def _read_wav(file: Path) -> tuple[np.ndarray, int, int]:
    """``(mono float32 samples in [-1, 1], rate, channels)`` of a PCM (8 to 32 bits) or float WAV file."""
    from scipy.io import wavfile

    if file.stat().st_size == 0:
        raise DataError(f"wav-folder: '{file}' is an empty file (0 bytes); remove it")
    try:
        with warnings.catch_warnings():  # a chunk scipy skips (metadata) is no problem; a damaged file raises
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, samples = wavfile.read(file)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"wav-folder: cannot read '{file}' ({exc}); remove it or re-save it as a PCM WAV") from None
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    if samples.size == 0:
        raise DataError(f"wav-folder: '{file}' holds no samples; remove it")
    if samples.dtype.kind == "u":
        scaled = (samples.astype(np.float64) - 128) / 128
    elif samples.dtype.kind == "i":
        scaled = samples.astype(np.float64) / float(2 ** (8 * samples.dtype.itemsize - 1))
    else:
        scaled = samples.astype(np.float64)
    mono = scaled if scaled.ndim == 1 else scaled.mean(axis=1)
    if not np.isfinite(mono).all():
        raise DataError(f"wav-folder: '{file}' holds samples that are not finite; remove it or re-save it")
    if np.abs(mono).max() > 1:
        log.warning(
            "wav-folder: %s has float samples beyond [-1, 1] (peak %.3g); clipped to [-1, 1]", file, np.abs(mono).max()
        )
    return np.clip(mono, -1, 1).astype(np.float32), int(rate), channels


SOURCES = [
    DataSource(
        "wav-folder",
        load_wav_folder,
        "WAV files in PATH, or in class sub-folders of PATH (one label per folder)",
        argument="PATH",
        modality="audio",
    ),
    DataSource(
        "notes",
        load_notes,
        "512 synthetic half-second notes of C major (C4 to C5, the labels) with varied timbre, 16 kHz (fixed seed)",
        modality="audio",
    ),
]
