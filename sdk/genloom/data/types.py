"""Training data: what every kind's data offers the SDK (:class:`Dataset`), and the built-in kinds' data, held in
memory as numpy arrays or text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
from typing_extensions import Self

from genloom.errors import DataError

SPLIT_SEED = 20240601
"""Seed of the train/validation split: fixed, so every run and `genloom eval` hold out the same examples."""
MAX_CLASSES = 10_000
"""The most class labels an image data source may have (labels 0..MAX_CLASSES-1)."""


class Dataset(Protocol):
    """What the training data of every kind offers the SDK: a data kind's ``dataset`` class has these members.

    :class:`ImageData` and :class:`TextData` are the built-in kinds'; a plugin's kind brings its own class.
    """

    modality: ClassVar[str]
    """The data kind's name."""

    @property
    def source(self) -> str:
        """The ``--data`` spec it came from (for messages and the manifest)."""

    @property
    def part(self) -> str:
        """Which part of the source this is: ``all``, ``train`` or ``validation``."""

    def __len__(self) -> int:
        """How many examples (images, characters, rows ...) it holds."""

    def facts(self) -> dict[str, Any]:
        """What a generator needs to know to be built for this data, as JSON values (saved in the manifest)."""

    def split(self, fraction: float) -> tuple[Self, Self | None]:
        """``(train, validation)`` with about ``fraction`` held out, the same every time; validation is None when
        it rounds to nothing."""


@dataclass
class ImageData:
    """Images as float32 ``(N, C, H, W)`` in ``[0, 1]``, with optional integer class labels.

    Labels are integers ``0..K-1`` with ``K <= MAX_CLASSES``; without ``class_names``
    every class from 0 to the largest label must have an image. Images must be finite.
    """

    images: np.ndarray
    source: str
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    part: str = "all"
    """Which part of the source this is: ``all``, ``train`` or ``validation``."""
    modality: ClassVar[str] = "image"

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[0] == 0:
            raise DataError(f"data source '{self.source}' holds no images (array shape {self.images.shape})")
        self.images = np.ascontiguousarray(self.images, dtype=np.float32)
        if not np.isfinite(self.images).all():
            bad = int(np.flatnonzero(~np.isfinite(self.images).reshape(len(self.images), -1).all(axis=1))[0])
            raise DataError(
                f"data source '{self.source}': images hold NaN or infinite values (the first at image {bad}); "
                "fix or remove those images"
            )
        if self.labels is not None:
            self.labels = self._checked_labels(np.asarray(self.labels))
            if self.class_names is None:
                self.class_names = [str(c) for c in range(int(self.labels.max()) + 1)]

    def _checked_labels(self, labels: np.ndarray) -> np.ndarray:
        """``labels`` as int64 after checking them: one per image, integers in ``0..K-1``, ``K`` bounded, no class
        empty."""
        where = f"data source '{self.source}'"
        if labels.shape != (len(self.images),):
            raise DataError(
                f"{where}: {labels.size} labels for {len(self.images)} images; give exactly one label per image"
            )
        if labels.dtype.kind not in "iu":
            raise DataError(
                f"{where}: 'labels' are {labels.dtype}, not integers; give class indices 0..K-1 "
                "as an integer array (e.g. labels.astype(numpy.int64))"
            )
        if self.class_names is not None and len(self.class_names) > MAX_CLASSES:
            raise DataError(
                f"{where}: {len(self.class_names)} classes; at most {MAX_CLASSES} are supported, merge some of them"
            )
        classes = len(self.class_names) if self.class_names is not None else MAX_CLASSES
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= classes:
            bound = (
                f"{len(self.class_names)} classes" if self.class_names is not None else f"at most {MAX_CLASSES} classes"
            )
            raise DataError(
                f"{where}: 'labels' range over {low}..{high}; they must be class indices 0..K-1 "
                f"({bound}), so number the classes from 0"
            )
        if self.class_names is None:
            empty = np.setdiff1d(np.arange(high + 1), labels)
            if empty.size:
                raise DataError(
                    f"{where}: 'labels' go up to {high} but no image has label {int(empty[0])}; "
                    "number the classes 0..K-1 without gaps"
                )
        return labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        """Number of classes, 0 for unlabelled data."""
        return len(self.class_names) if self.class_names else 0

    def facts(self) -> dict[str, Any]:
        """What a generator needs to know to be built for this data (saved in the manifest)."""
        channels, height, width = self.images.shape[1:]
        return {
            "channels": int(channels),
            "height": int(height),
            "width": int(width),
            "num_classes": self.num_classes,
            "class_names": self.class_names or [],
        }

    def split(self, fraction: float) -> tuple[ImageData, ImageData | None]:
        """``(train, validation)``: a fixed random ``fraction`` held out (None when it rounds to no image)."""
        held_out = int(len(self) * fraction)
        if held_out == 0 or held_out == len(self):
            return self, None
        order = np.random.default_rng(SPLIT_SEED).permutation(len(self))
        return self.subset(order[held_out:], "train"), self.subset(order[:held_out], "validation")

    def subset(self, index: np.ndarray, part: str = "all") -> ImageData:
        """The images (and labels) at ``index``."""
        labels = None if self.labels is None else self.labels[index]
        return ImageData(self.images[index], source=self.source, labels=labels, class_names=self.class_names, part=part)

    def sample_batch(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Draw ``batch_size`` distinct examples (all of them when there are fewer)."""
        index = rng.choice(len(self), size=min(batch_size, len(self)), replace=False)
        labels = self.labels[index] if self.labels is not None else None
        return self.images[index], labels


@dataclass
class TextData:
    """A training corpus as one string; documents are separated by blank lines."""

    text: str
    source: str
    part: str = "all"
    """Which part of the source this is: ``all``, ``train`` or ``validation``."""
    modality: ClassVar[str] = "text"

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise DataError(f"data source '{self.source}' holds no text; point it at non-empty .txt or .md files")

    def __len__(self) -> int:
        return len(self.text)

    def facts(self) -> dict[str, Any]:
        """What a generator needs to know to be built for this data (saved in the manifest)."""
        return {"characters": len(self.text)}

    def split(self, fraction: float) -> tuple[TextData, TextData | None]:
        """``(train, validation)``: the last ``fraction`` of the text is held out (None when it rounds to nothing)."""
        cut = len(self.text) - int(len(self.text) * fraction)
        if cut == len(self.text) or not self.text[:cut].strip() or not self.text[cut:].strip():
            return self, None
        return TextData(self.text[:cut], self.source, part="train"), TextData(
            self.text[cut:], self.source, part="validation"
        )


@dataclass(frozen=True)
class DataSource:
    """A named way to get a :data:`Dataset`, as registered by a plugin.

    ``open`` receives the part of ``--data NAME:ARGUMENT`` after the colon, or
    ``None`` when there is none. ``argument`` names that part for help texts
    (``"PATH"``); leave it empty for a source that takes no argument, and set
    ``argument_required=False`` when it may be left out.
    """

    name: str
    open: Callable[[str | None], Dataset]
    description: str
    argument: str = ""
    modality: str = field(default="image")
    argument_required: bool = True

    @property
    def usage(self) -> str:
        """How to write it after ``--data``: ``digits[:SIZE]``, ``npz:PATH``, ``pydoc``."""
        if not self.argument:
            return self.name
        return f"{self.name}:{self.argument}" if self.argument_required else f"{self.name}[:{self.argument}]"
