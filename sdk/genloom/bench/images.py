"""Images/s of an image generator: PyTorch eager (the peer) against genloom's ONNX Runtime path, beside the matmul roof."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from genloom.bench.flops import graph_flops
from genloom.bench.measure import Timing, time_call

IMAGE_BATCHES = (1, 8, 64, 256)


class ImageRow(BaseModel):
    """One way of generating, at one batch size."""

    model: str
    path: str = Field(description="'torch eager', 'onnxruntime fp32', ...")
    batch: int
    images_per_second: float
    timing: Timing
    ratio_to_peer: float | None = Field(None, description="images/s over PyTorch eager's at the same batch size.")
    share_of_roof: float = Field(description="images/s over the images/s the matmul roof allows.")


def image_rows(name: str, torch_model: Any, onnx_model: Any, flops_per_image: int, matmul_gflops: float,
               batches: tuple[int, ...] = IMAGE_BATCHES, repeats: int = 5) -> list[ImageRow]:
    """Rows for each batch size: the torch model (if given) first, then the export."""
    roof = matmul_gflops * 1e9 / flops_per_image
    rows: list[ImageRow] = []
    for batch in batches:
        labels = {"labels": [0]} if "labels" in getattr(onnx_model, "input_names", []) else {}
        peer = None
        for label, model in (("torch eager", torch_model), ("onnxruntime fp32", onnx_model)):
            if model is None:
                continue
            timing = time_call(lambda m=model: m.generate(n=batch, seed=0, **labels), repeats=repeats)
            rate = batch / timing.median
            peer = rate if label == "torch eager" else peer
            rows.append(ImageRow(model=name, path=label, batch=batch, images_per_second=rate, timing=timing,
                                 ratio_to_peer=rate / peer if peer else None, share_of_roof=rate / roof))
    return rows


def image_flops(export_dir: Path, export: dict[str, Any]) -> int:
    """FLOPs to make one image: the export's first graph at batch 1."""
    graph = export["graphs"][0]
    return graph_flops(export_dir / graph["file"], {"batch": 1})
