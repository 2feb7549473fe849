"""Image data sources: scikit-learn's digits, a folder of pictures, a .npz of arrays."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from genloom.data.folders import labelled_files
from genloom.data.types import ImageData
from genloom.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


DIGIT_SIZES = (8, 16, 32, 64)


def load_digits(argument: str | None) -> ImageData:
    """``digits[:SIZE]``: the 1,797 8x8 handwritten digits that ship inside scikit-learn, upscaled to SIZE."""
    from genloom.install import require_training_install

    require_training_install("the digits data source (it ships with scikit-learn)")
    from sklearn.datasets import load_digits as sklearn_digits

    size = _digit_size(argument)
    pixels, labels = sklearn_digits(return_X_y=True)
    images = (pixels / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    if size != 8:
        images = _resize(images, size)
    source = "digits" if argument is None else f"digits:{size}"
    return ImageData(images, source=source, labels=labels, class_names=[str(d) for d in range(10)])


def _digit_size(argument: str | None) -> int:
    if argument is None:
        return 8
    if not argument.isdigit() or int(argument) not in DIGIT_SIZES:
        sizes = ", ".join(str(s) for s in DIGIT_SIZES)
        raise DataError(
            f"digits: SIZE must be one of {sizes} (pixels per side), got {argument!r}; e.g. --data digits:32"
        )
    return int(argument)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize of float ``(N, 1, H, W)`` images in [0, 1] to ``size`` x ``size``."""
    from PIL import Image

    resized = [
        np.asarray(Image.fromarray(image[0], mode="F").resize((size, size), Image.Resampling.BICUBIC))
        for image in images
    ]
    return np.asarray(np.clip(np.stack(resized)[:, None], 0.0, 1.0))


def load_image_folder(argument: str | None) -> ImageData:
    """``image-folder:PATH``: PNG/JPEG files in PATH, or in class sub-folders of PATH (one label per folder).

    All images take the size of the most common one; grayscale folders give one
    channel, anything else RGB.
    """
    root = Path(argument or "")
    found = labelled_files(root, IMAGE_SUFFIXES, source="image-folder", what="PNG/JPEG files")
    images = _read_images(found.files)
    return ImageData(images, source=f"image-folder:{root}", labels=found.labels, class_names=found.class_names)


def load_npz(argument: str | None) -> ImageData:
    """``npz:PATH``: an ``images`` array (N,H,W), (N,H,W,C) or (N,C,H,W), uint8 or float in [0, 1]; optional ``labels``.

    Labels must be an integer array with one class index ``0..K-1`` per image (see :class:`ImageData`).
    """
    path = Path(argument or "")
    if not path.is_file():
        raise DataError(f"npz: '{path}' is not a file; give a .npz saved with numpy.savez")
    try:
        archive = np.load(path, allow_pickle=False)
        if isinstance(archive, np.ndarray):
            raise DataError(
                f"npz: '{path}' holds one bare array (a .npy file); save it with numpy.savez(path, images=...)"
            )
        with archive:
            if "images" not in archive.files:
                raise DataError(
                    f"npz: '{path}' has no 'images' array (it has: {', '.join(archive.files) or 'nothing'})"
                )
            images = _to_nchw(archive["images"], path)
            labels = archive["labels"] if "labels" in archive.files else None
    except (OSError, ValueError) as exc:  # not a zip, a damaged member, an object array (pickle)
        raise DataError(f"npz: cannot read '{path}' ({exc}); save it with numpy.savez") from None
    return ImageData(images, source=f"npz:{path}", labels=labels)


def _read_images(files: list[Path]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    pictures = []
    for file in files:
        try:
            with Image.open(file) as picture:
                picture.load()
                pictures.append(picture)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"image-folder: cannot read '{file}' ({exc}); remove it or re-save it as PNG") from None
    mode = "L" if all(p.mode in ("1", "L", "I;16", "I") for p in pictures) else "RGB"
    size, _ = Counter(p.size for p in pictures).most_common(1)[0]
    resized = sum(p.size != size for p in pictures)
    if resized:
        log.info("image-folder: resized %d of %d images to %dx%d", resized, len(pictures), *size)
    arrays = [np.asarray(p.convert(mode).resize(size, Image.Resampling.LANCZOS), dtype=np.float32) for p in pictures]
    stacked = np.stack(arrays) / 255.0
    return stacked[:, None] if mode == "L" else stacked.transpose(0, 3, 1, 2)


def _to_nchw(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise DataError(
            f"npz: 'images' in '{path}' has shape {array.shape}; use (N,H,W), (N,H,W,C) or (N,C,H,W) with C=1 or 3"
        )
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise DataError(
            f"npz: float 'images' in '{path}' hold NaN or infinite values; replace them or drop those images"
        )
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise DataError(
            f"npz: float 'images' in '{path}' range over [{array.min():g}, {array.max():g}]; scale them to [0, 1] or "
            "save uint8"
        )
    return array
