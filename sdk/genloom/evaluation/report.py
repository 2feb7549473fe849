"""``genloom eval``: how good a model is, by its generator's held-out figures and its kind's own evaluation
(images: next to real data against itself; text: beside a baseline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from genloom.errors import DataError, NotAvailableError
from genloom.evaluation.distances import NEIGHBOURS
from genloom.evaluation.images import MAX_SAMPLES, SetComparison


class EvalReport(BaseModel):
    """Everything ``genloom eval`` measured; ``--json`` prints it as is."""

    model_config = ConfigDict(
        extra="forbid"
    )  # a kind's evaluate() returning another field is an error, not a lost figure

    model: str
    generator: str
    backend: str = Field(description="What generated the samples: 'torch' or 'onnxruntime'.")
    data: str
    samples: int = Field(0, description="Images in each compared set (0: the kind compares no sets).")
    seed: int
    classifier_task: str = Field(
        "none", description="What the feature classifier learned: 'labels', 'rotation' or 'none'."
    )
    classifier_cached: bool = False
    classifier_accuracy: float | None = Field(
        None, description="The classifier's accuracy on real images it did not train on."
    )
    neighbours: int = Field(NEIGHBOURS, description="k of the k-NN manifolds.")
    generated: SetComparison | None = Field(None, description="The model's samples against real data (image models).")
    real: SetComparison | None = Field(None, description="Real data against real data: the reference line.")
    images_per_second: float | None = Field(
        None, description="Generation speed of this run (this backend, this machine)."
    )
    held_out: dict[str, float] = Field(description="The generator's own figures on the held-out split (e.g. VAE ELBO).")
    baselines: dict[str, float] = Field(
        default_factory=dict, description="Reference models on the same split (text: a character bigram)."
    )
    figures: dict[str, float] = Field(default_factory=dict, description="A plugin kind's own figures, by name.")


def evaluate_model(model_dir: str | Path, data_spec: str, *, samples: int = MAX_SAMPLES, seed: int = 0) -> EvalReport:
    """Evaluate the model or export in ``model_dir`` against the ``data_spec`` source.

    Held-out figures come from the model itself (the generator's ``evaluate`` for a
    trained model, the runtime's for an export); the rest from the kind's
    ``evaluate``, which generates through the model's own backend (PyTorch for a
    trained model, ONNX Runtime for an export).
    """
    import genloom
    from genloom.plugins import get_registry

    registry = get_registry()
    model = genloom.load(model_dir)
    manifest = model.manifest
    kind = registry.kind(manifest.modality)
    source = registry.source_for(data_spec)
    if source.modality != manifest.modality:
        raise DataError(
            f"--data {data_spec}: '{model_dir}' makes {manifest.modality}, but '{source.name}' holds "
            f"{source.modality}; "
            "evaluate on the data it trained on"
        )
    data = registry.open_data(data_spec)
    train, validation = data.split(float(manifest.config.get("validation_fraction", 0.1)))
    held_out = model.evaluate(validation) if validation is not None else {}
    if kind.evaluate is None and not held_out:
        raise NotAvailableError(
            f"the {kind.name} kind offers no evaluation and '{manifest.generator}' reports no held-out "
            "figures, so there is nothing to measure"
        )
    report: dict[str, Any] = {
        "model": str(model_dir),
        "generator": manifest.generator,
        "backend": model.backend,
        "data": data.source,
        "seed": seed,
        "held_out": held_out,
    }
    if kind.evaluate is not None:
        report.update(kind.evaluate(model, data, train, validation, samples=samples, seed=seed))
    return EvalReport(**report)
