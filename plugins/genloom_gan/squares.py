"""The image sizes the DCGAN-style convolutional nets take: square, 4x4 doubled 1 to 4 times.

Shared by the ``gan`` and ``vae`` plugins' nets (both build around a 4x4 map). Imports no torch.
"""

from __future__ import annotations

from typing import Any

from genloom.errors import DataError

SQUARE_SIZES = (8, 16, 32, 64)


def square_image_levels(facts: dict[str, Any], generator: str) -> int:
    """How many doublings of a 4x4 map reach the images of ``facts``: 1, 2, 3 or 4 for 8, 16, 32 or 64 pixels.

    Any other shape is a DataError that tells the user of ``generator`` to resize.
    """
    height, width = facts["height"], facts["width"]
    if height != width or height not in SQUARE_SIZES:
        sizes = ", ".join(str(size) for size in SQUARE_SIZES[:-1])
        raise DataError(
            f"{generator}: images are {height}x{width}; "
            f"it needs square images of {sizes} or {SQUARE_SIZES[-1]} pixels (resize them)"
        )
    return SQUARE_SIZES.index(height) + 1
