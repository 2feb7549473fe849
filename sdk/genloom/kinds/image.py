"""The ``image`` kind: float images in ``[0, 1]``, a PNG grid on disk, compared pixel by pixel."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np

from genloom.data.types import ImageData
from genloom.fileio import atomic_path
from genloom.kinds import DataKind
from genloom.results import ImageResult, Provenance
from genloom.sampling import ImageSampling

DEFAULT_OUT = "generated.png"


def make_result(images: Any, provenance: Provenance) -> ImageResult:
    """``(N, C, H, W)`` float32 from a generator or an export -> an :class:`ImageResult` (``(N, H, W, C)``)."""
    return ImageResult(np.asarray(images).transpose(0, 2, 3, 1).copy(), provenance)


def write(result: ImageResult, out: Path | None) -> str:
    """The images tiled in one PNG at ``out`` (the CLI passes the kind's default when the user gives none)."""
    target = Path(out or DEFAULT_OUT)
    with atomic_path(target) as tmp:
        result.grid().save(tmp, format="PNG")
    return f"wrote {len(result.array)} images to {target}"


def compare(first: ImageResult, second: ImageResult) -> float:
    """The largest pixel difference."""
    return float(np.abs(first.array - second.array).max())


def to_json(result: ImageResult) -> dict[str, Any]:
    """``{"array": (N, H, W, C) nested lists of floats in [0, 1]}``."""
    return {"array": result.array.tolist()}


def to_png_json(result: ImageResult) -> dict[str, Any]:
    """``{"png": [one base64 PNG per image]}`` (8 bits a channel): the compact form for apps."""
    encoded = []
    for image in result.images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return {"png": encoded}


def evaluate(
    model: Any, data: ImageData, train: ImageData, validation: ImageData | None, *, samples: int, seed: int
) -> dict[str, Any]:
    """Frechet distance, precision/recall (and label accuracy) in a domain classifier's features, beside real data."""
    from genloom.evaluation.images import evaluate_images
    from genloom.install import require_training_install

    require_training_install("evaluating images (a feature classifier in PyTorch)")
    return evaluate_images(model, data, samples=samples, seed=seed)


def bench(context: Any) -> dict[str, Any]:
    """Images/s at each batch size: the bare torch module (the peer) and each ONNX Runtime path, beside the matmul
    roof."""
    from genloom.bench.images import bench_images

    return {"images": bench_images(context)}


IMAGE = DataKind(
    name="image",
    dataset=ImageData,
    sampling=ImageSampling,
    result=ImageResult,
    make_result=make_result,
    write=write,
    compare=compare,
    to_json=to_json,
    forms={"png": to_png_json},
    check_settings={"n": 3, "seed": 7},
    description="float images (N, H, W, C) in [0, 1]; a PNG grid",
    default_out=DEFAULT_OUT,
    sample_suffix=".png",
    training_samples={"n": 64},
    count_field="n",
    evaluate=evaluate,
    bench=bench,
)
