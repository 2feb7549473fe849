"""``genloom eval``: how good a model is, by its generator's held-out figures and its kind's own evaluation
(images: next to real data against itself; text: beside a baseline)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from genloom.errors import ConfigError, DataError, NotAvailableError
from genloom.evaluation.distances import NEIGHBOURS
from genloom.evaluation.images import MAX_SAMPLES, SetComparison
from genloom.fileio import check_output_file


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
    seeds: list[int] = Field(description="The seeds of the samples (and real halves) the figures are averaged over.")
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
    spread: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Standard deviation over the seeds of each number the kind's evaluation reports, keyed like "
            "'generated.recall' or 'figures.NAME' (empty with one seed)."
        ),
    )


def evaluate_model(
    model_dir: str | Path,
    data_spec: str,
    *,
    samples: int = MAX_SAMPLES,
    seed: int = 0,
    seeds: int = 1,
    report_png: Path | None = None,
) -> EvalReport:
    """Evaluate the model or export in ``model_dir`` against the ``data_spec`` source.

    Held-out figures come from the model itself (the generator's ``evaluate`` for a
    trained model, the runtime's for an export); the rest from the kind's
    ``evaluate``, which generates through the model's own backend (PyTorch for a
    trained model, ONNX Runtime for an export). The kind's evaluation runs at
    ``seeds`` seeds from ``seed`` on; its figures are their means, and ``spread``
    holds their standard deviations, so that a change is not judged on noise.
    With ``report_png``, the kind draws the samples of the first seed beside the
    real data there (kinds with a ``report``).
    """
    if seeds < 1:
        raise ConfigError(f"seeds: evaluate at one seed or more, got {seeds}")
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
    if report_png is not None:
        if kind.report is None:
            raise ConfigError(f"--report: the {kind.name} kind draws no report; leave --report out")
        if report_png.suffix.lower() != ".png":
            raise ConfigError(f"--report {report_png}: the report is a PNG picture; end the name in .png")
        check_output_file(report_png, "--report")
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
        "seeds": list(range(seed, seed + seeds)),
        "held_out": held_out,
    }
    if kind.evaluate is not None:
        runs = [kind.evaluate(model, data, train, validation, samples=samples, seed=s) for s in report["seeds"]]
        report.update(_mean_over_seeds(runs))
    if report_png is not None and kind.report is not None:
        kind.report(model, data, train, validation, report_png, seed=seed)
    return EvalReport(**report)


def _mean_over_seeds(runs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One kind evaluation from several seeds' evaluations: each figure of the compared sets and each of the
    kind's ``figures`` and ``baselines`` becomes its mean, with its standard deviation in ``spread``; other
    numbers (images/s) are averaged; the rest (sample counts, the classifier's task) is the same in every run."""
    combined: dict[str, Any] = dict(runs[0])
    spread: dict[str, float] = {}
    for key, first in runs[0].items():
        if isinstance(first, SetComparison | dict):
            values = [run[key].model_dump() if isinstance(run[key], SetComparison) else run[key] for run in runs]
            means = {}
            for name, value in values[0].items():
                means[name] = value if value is None else _mean(f"{key}.{name}", [v[name] for v in values], spread)
            combined[key] = SetComparison(**means) if isinstance(first, SetComparison) else means
        elif isinstance(first, float):  # a speed or the classifier's accuracy: no figure of the model's quality
            combined[key] = statistics.fmean(run[key] for run in runs)
    return {**combined, "spread": spread}


def _mean(name: str, values: list[float], spread: dict[str, float]) -> float:
    """The mean of ``values``; their sample standard deviation goes into ``spread[name]`` where there are two or
    more."""
    if len(values) > 1:
        spread[name] = statistics.stdev(values)
    return statistics.fmean(values)
