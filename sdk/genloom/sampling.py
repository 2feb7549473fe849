"""Sampling settings, validated before a generator sees them."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from genloom.config import StrictModel


class ImageSampling(StrictModel):
    """How many images to make, from which seed, for which classes."""

    n: int = Field(16, ge=1, le=65536, description="Number of images.")
    seed: int | None = Field(None, ge=0, description="Seed of the latents; the same seed gives the same images.")
    labels: list[int] | None = Field(
        None, min_length=1, description="Class labels (conditional generators), repeated in turn to fill n images."
    )

    def rng(self) -> np.random.Generator:
        """The numpy generator to draw latents from (fresh entropy when ``seed`` is None)."""
        return np.random.default_rng(self.seed)
