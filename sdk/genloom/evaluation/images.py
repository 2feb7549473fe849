"""The image kind's ``genloom eval``: the model's samples next to real data against itself, in the features of
a small classifier genloom trains on the data source and caches (a domain-specific Frechet distance)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from genloom.data.types import ImageData
from genloom.errors import DataError
from genloom.evaluation.classifier import classifier_for
from genloom.evaluation.distances import NEIGHBOURS, frechet_distance, precision_recall

MAX_SAMPLES = 2000
"""Images per set at most; real data is split into two halves of up to this size."""


class SetComparison(BaseModel):
    """One set of images measured against the reference half of the real data."""

    frechet_distance: float = Field(description="Frechet distance in the classifier's feature space (lower is better).")
    precision: float = Field(description="Share of the images inside the real k-NN manifold (fidelity).")
    recall: float = Field(description="Share of real images inside this set's k-NN manifold (diversity).")
    label_accuracy: float | None = Field(
        None, description="Share classified as the label asked for (conditional models)."
    )


def evaluate_images(model: Any, data: ImageData, *, samples: int = MAX_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """Frechet distance, precision and recall (and label accuracy for a conditional model) of ``model``'s samples
    against one half of ``data``, beside the other real half against it; as fields of the eval report."""
    manifest = model.manifest
    conditional = model.conditional
    if conditional and data.labels is None:
        raise DataError(
            f"'{manifest.generator}' is conditional, so its label accuracy needs labelled data, but '{data.source}' "
            "has no labels; evaluate on the labelled source it trained on"
        )
    _check_shape(manifest.facts, data)
    reference, other_real = _real_halves(data, min(samples, len(data) // 2), seed)
    classifier = classifier_for(data)
    labels = other_real.labels.tolist() if conditional and other_real.labels is not None else None
    started = time.perf_counter()
    images = model.generate(n=len(other_real), seed=seed, labels=labels).array.transpose(0, 3, 1, 2)
    images_per_second = len(images) / (time.perf_counter() - started)

    reference_features = classifier.features(reference.images)

    def compare(candidates: np.ndarray, wanted: np.ndarray | None) -> SetComparison:
        features = classifier.features(candidates)
        precision, recall = precision_recall(reference_features, features)
        accuracy = None if wanted is None else float((classifier.predict(candidates) == wanted).mean())
        return SetComparison(
            frechet_distance=frechet_distance(reference_features, features),
            precision=precision,
            recall=recall,
            label_accuracy=accuracy,
        )

    wanted = other_real.labels if conditional else None
    return {
        "samples": len(images),
        "classifier_task": classifier.task,
        "classifier_cached": classifier.cached,
        "classifier_accuracy": classifier.accuracy,
        "neighbours": NEIGHBOURS,
        "images_per_second": images_per_second,
        "generated": compare(images, wanted),
        "real": compare(other_real.images, wanted),
    }


def _check_shape(facts: dict[str, Any], data: ImageData) -> None:
    made = (facts.get("channels"), facts.get("height"), facts.get("width"))
    held = data.images.shape[1:]
    if made != tuple(held):
        raise DataError(
            f"the model makes {made[1]}x{made[2]} images with {made[0]} channel(s), but '{data.source}' holds "
            f"{held[1]}x{held[2]} with {held[0]}; evaluate on the data source it trained on"
        )


def _real_halves(data: ImageData, size: int, seed: int) -> tuple[ImageData, ImageData]:
    """Two disjoint random sets of ``size`` real images: the reference, and real data to compare with it."""
    if size <= NEIGHBOURS:
        raise DataError(f"'{data.source}' has {len(data)} images; evaluation needs at least {2 * (NEIGHBOURS + 1)}")
    order = np.random.default_rng(seed).permutation(len(data))
    return data.subset(order[:size]), data.subset(order[size : 2 * size])
