"""``genloom eval``: how good a trained model is, next to real data against itself (images) or a baseline (text)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from genloom.data.types import ImageData
from genloom.errors import DataError
from genloom.evaluation.baselines import char_bigram_bits_per_byte
from genloom.evaluation.classifier import classifier_for
from genloom.evaluation.distances import NEIGHBOURS, frechet_distance, precision_recall

MAX_SAMPLES = 2000
"""Images per set at most; real data is split into two halves of up to this size."""


class SetComparison(BaseModel):
    """One set of images measured against the reference half of the real data."""

    frechet_distance: float = Field(description="Frechet distance in the classifier's feature space (lower is better).")
    precision: float = Field(description="Share of the images inside the real k-NN manifold (fidelity).")
    recall: float = Field(description="Share of real images inside this set's k-NN manifold (diversity).")
    label_accuracy: float | None = Field(None, description="Share classified as the label asked for (conditional models).")


class EvalReport(BaseModel):
    """Everything ``genloom eval`` measured; ``--json`` prints it as is."""

    model: str
    generator: str
    backend: str = Field(description="What generated the samples: 'torch' or 'onnxruntime'.")
    data: str
    samples: int = Field(description="Images in each compared set.")
    seed: int
    classifier_task: str = Field(description="What the feature classifier learned: 'labels' or 'rotation'.")
    classifier_cached: bool
    classifier_accuracy: float | None = Field(None, description="The classifier's accuracy on real images it did not train on.")
    neighbours: int = Field(description="k of the k-NN manifolds.")
    generated: SetComparison | None = Field(None, description="The model's samples against real data (image models).")
    real: SetComparison | None = Field(None, description="Real data against real data: the reference line.")
    images_per_second: float | None = Field(None, description="Generation speed of this run (this backend, this machine).")
    held_out: dict[str, float] = Field(description="The generator's own figures on the held-out split (e.g. VAE ELBO).")
    baselines: dict[str, float] = Field(default_factory=dict, description="Reference models on the same split (text: a character bigram).")


def evaluate_model(model_dir: str | Path, data_spec: str, *, samples: int = MAX_SAMPLES, seed: int = 0) -> EvalReport:
    """Evaluate the model or export in ``model_dir`` against the ``data_spec`` source.

    Samples come through the model's own backend (PyTorch for a trained model, ONNX
    Runtime for an export). Held-out figures come from the generator's ``evaluate``
    for a trained model, and from the runtime's perplexity for a text export.
    """
    import genloom
    from genloom.plugins import get_registry

    model = genloom.load(model_dir)
    manifest = model.manifest
    data = get_registry().open_data(data_spec)
    if data.modality != manifest.modality:
        raise DataError(f"'{model_dir}' makes {manifest.modality}, but '{data.source}' holds {data.modality}; evaluate on the data it trained on")
    conditional = model.conditional
    if conditional and getattr(data, "labels", None) is None:
        raise DataError(f"'{manifest.generator}' is conditional, so its label accuracy needs labelled data, but '{data.source}' "
                        "has no labels; evaluate on the labelled source it trained on")
    train, validation = data.split(float(manifest.config.get("validation_fraction", 0.1)))
    held_out = _held_out(model, validation) if validation is not None else {}
    report: dict[str, Any] = {"model": str(model_dir), "generator": manifest.generator, "backend": model.backend, "data": data.source,
                              "seed": seed, "neighbours": NEIGHBOURS, "held_out": held_out}
    if not isinstance(data, ImageData):
        if validation is not None:
            report["baselines"] = {"char_bigram_bits_per_byte": char_bigram_bits_per_byte(train.text, validation.text)}
        return EvalReport(samples=0, classifier_task="none", classifier_cached=False, **report)

    _check_shape(manifest.facts, data)
    reference, other_real = _real_halves(data, min(samples, len(data) // 2), seed)
    classifier = classifier_for(data)
    labels = None if not conditional else other_real.labels.tolist()
    started = time.perf_counter()
    images = model.generate(n=len(other_real), seed=seed, labels=labels).array.transpose(0, 3, 1, 2)
    report["images_per_second"] = len(images) / (time.perf_counter() - started)

    reference_features = classifier.features(reference.images)

    def compare(candidates: np.ndarray, wanted: np.ndarray | None) -> SetComparison:
        features = classifier.features(candidates)
        precision, recall = precision_recall(reference_features, features)
        accuracy = None if wanted is None else float((classifier.predict(candidates) == wanted).mean())
        return SetComparison(frechet_distance=frechet_distance(reference_features, features), precision=precision,
                             recall=recall, label_accuracy=accuracy)

    wanted = other_real.labels if conditional else None
    return EvalReport(
        samples=len(images), classifier_task=classifier.task, classifier_cached=classifier.cached, classifier_accuracy=classifier.accuracy,
        generated=compare(images, wanted), real=compare(other_real.images, wanted), **report,
    )


def _held_out(model: Any, validation: Any) -> dict[str, float]:
    """The model's own figures on the held-out split: the generator's ``evaluate`` in PyTorch, or an export's perplexity."""
    import math

    if model.backend == "torch":
        from genloom.training import inference

        with inference(model.generator):
            return model.generator.evaluate(validation)
    if hasattr(model, "perplexity"):
        perplexity = model.perplexity(validation.text)
        return {"val_loss": math.log(perplexity), "perplexity": perplexity}
    return {}


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
