"""What ``generate`` returns: the output plus the provenance that reproduces it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel

from genloom.errors import ConfigError


@dataclass(frozen=True)
class Provenance:
    """Where a result came from: enough to trace it to a model and a call, and to make it again."""

    generator: str
    plugin: str
    plugin_version: str
    artifact_sha256: str
    seed: int | None
    settings: dict[str, Any] = field(default_factory=dict)
    """The sampling settings, as JSON values."""

    @classmethod
    def unsaved(cls, generator: str, settings: BaseModel) -> Provenance:
        """The provenance of a result made by a generator not saved yet (during training, in the conformance kit):
        no plugin or artifact to name, only the generator and the pydantic ``settings``."""
        return cls(generator, "", "", "", getattr(settings, "seed", None), settings.model_dump())


@dataclass(frozen=True)
class ImageResult:
    """Generated images: ``array`` is float32 ``(N, H, W, C)`` in ``[0, 1]``."""

    array: np.ndarray
    provenance: Provenance

    @property
    def images(self) -> list[Image.Image]:
        """The images as PIL images (mode ``L`` or ``RGB``)."""
        return [_to_pil(image) for image in self.array]

    def grid(self, columns: int | None = None) -> Image.Image:
        """All images tiled in one picture."""
        return image_grid(self.array.transpose(0, 3, 1, 2), columns)


@dataclass(frozen=True)
class TextResult:
    """Generated texts (each prompt's ``num_return_sequences`` in turn) and their new token ids."""

    texts: list[str]
    tokens: list[list[int]]
    provenance: Provenance

    @property
    def text(self) -> str:
        """The first (often the only) text."""
        return self.texts[0]


ImageInput = ImageResult | Image.Image | Sequence[Image.Image] | np.ndarray
"""Images as users hand them in: a result, a PIL image or a list of them, or a numpy array."""


def as_image_batch(images: ImageInput, channels: int, size: int, *, what: str = "images") -> np.ndarray:
    """User images -> float32 ``(N, C, H, W)`` in ``[0, 1]``, checked against the model's ``channels`` x ``size`` x
    ``size``.

    Takes an :class:`ImageResult`, a PIL image or a list of them, or a numpy array
    ``(H, W)``, ``(H, W, C)`` or ``(N, H, W, C)`` (uint8, or float in ``[0, 1]``).
    """
    if isinstance(images, ImageResult):
        images = images.array
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)) and images and all(isinstance(i, Image.Image) for i in images):
        mode = "L" if channels == 1 else "RGB"
        images = np.stack([np.asarray(i.convert(mode), dtype=np.uint8) for i in images])
    array = np.asarray(images)
    if array.shape in ((size, size), (size, size, channels)):  # one image
        array = array.reshape(1, size, size, channels)
    elif array.ndim == 3 and channels == 1:  # (N, H, W) grayscale
        array = array[..., None]
    expected = f"(N, {size}, {size}, {channels}) or one ({size}, {size}, {channels}) image"
    if array.ndim != 4 or array.shape[1:] != (size, size, channels):
        raise ConfigError(f"{what}: got an array of shape {array.shape}; this model takes {expected}")
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif not np.issubdtype(array.dtype, np.floating) or array.min() < 0.0 or array.max() > 1.0:
        raise ConfigError(f"{what}: pixel values must be uint8 or floats in [0, 1]")
    return np.ascontiguousarray(array.astype(np.float32, copy=False).transpose(0, 3, 1, 2))


def image_grid(images: np.ndarray, columns: int | None = None, padding: int = 1) -> Image.Image:
    """Tile float ``(N, C, H, W)`` images in ``[0, 1]`` into one PIL image, ``columns`` wide (square by default)."""
    count, channels, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    canvas = np.ones((rows * (height + padding) + padding, columns * (width + padding) + padding, channels), np.float32)
    for index, image in enumerate(images):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        canvas[top : top + height, left : left + width] = image.transpose(1, 2, 0)
    return _to_pil(canvas)


def _to_pil(image: np.ndarray) -> Image.Image:
    pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
