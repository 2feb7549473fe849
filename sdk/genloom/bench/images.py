"""Images/s of an image generator: PyTorch eager (the peer) against genloom's ONNX Runtime path, beside the matmul roof."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from genloom.bench.flops import graph_flops
from genloom.bench.measure import Timing, time_call

IMAGE_BATCHES = (1, 8, 64, 256)


class ImageRow(BaseModel):
    """One way of generating, at one batch size."""

    model: str
    path: str = Field(description="'torch eager', 'onnxruntime fp32', 'onnxruntime fp16 (CUDA)', ...")
    batch: int
    images_per_second: float
    timing: Timing
    matmul_gflops: float = Field(description="The machine's fp32 matmul GFLOP/s, measured just before this batch size's rows.")
    ratio_to_peer: float = Field(description="images/s over the peer's (PyTorch eager) at the same batch size.")
    share_of_roof: float | None = Field(description="images/s x FLOPs per image over matmul_gflops; None on CUDA.")


def image_rows(name: str, paths: list[tuple[str, Any, bool]], flops_per_image: int, matmul_roof: Callable[[], float],
               batches: tuple[int, ...] = IMAGE_BATCHES, repeats: int = 5) -> list[ImageRow]:
    """Rows for each batch size and path. ``paths`` are ``(label, model, on the CPU)``; the first is the peer
    the others are compared with. ``matmul_roof()`` (GFLOP/s) is measured again before each batch size's rows
    (a shared machine drifts); only CPU rows get a share of it."""
    rows: list[ImageRow] = []
    for batch in batches:
        gflops = matmul_roof()
        peer = None
        for label, model, on_cpu in paths:
            timing = time_call(lambda m=model: m.generate(n=batch, seed=0), repeats=repeats)  # conditional: every class in turn
            rate = batch / timing.median
            peer = peer or rate
            rows.append(ImageRow(model=name, path=label, batch=batch, images_per_second=rate, timing=timing, matmul_gflops=gflops,
                                 ratio_to_peer=rate / peer, share_of_roof=rate * flops_per_image / (gflops * 1e9) if on_cpu else None))
    return rows


def image_flops(export_dir: Path, export: dict[str, Any]) -> int:
    """FLOPs to make one image: the export's first graph at batch 1."""
    graph = export["graphs"][0]
    return graph_flops(export_dir / graph["file"], {"batch": 1})
