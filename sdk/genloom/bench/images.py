"""Images/s of an image generator: its bare PyTorch module (the peer) against genloom's ONNX Runtime path, beside the
matmul roof."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydantic import BaseModel, Field

from genloom.bench.context import BenchContext
from genloom.bench.flops import graph_flops
from genloom.bench.machine import matmul_roof
from genloom.bench.measure import Timing, time_call

IMAGE_BATCHES = (1, 8, 64, 256)
PEER_LABEL = "torch eager (bare module)"


class ImageRow(BaseModel):
    """One way of generating, at one batch size."""

    model: str
    path: str = Field(description=f"'{PEER_LABEL}', 'onnxruntime fp32', 'onnxruntime fp16 (CUDA)', ...")
    batch: int
    images_per_second: float
    timing: Timing
    matmul_gflops: float = Field(
        description="The machine's fp32 matmul GFLOP/s, measured just before this batch size's rows."
    )
    ratio_to_peer: float | None = Field(
        description="images/s over the peer's (the bare PyTorch module) at the same batch size; "
        "None where the peer is unavailable (see the report's peer_unavailable)."
    )
    share_of_roof: float | None = Field(description="images/s x FLOPs per image over matmul_gflops; None on CUDA.")


class ImagePath(NamedTuple):
    """One way to make images: its row label, ``generate(batch)``, and whether it runs on the CPU."""

    label: str
    generate: Callable[[int], object]
    on_cpu: bool


def onnx_image_path(label: str, model: Any, on_cpu: bool) -> ImagePath:
    """genloom's public API on an export: ``generate(n=batch, seed=0)`` (conditional: every class in turn)."""
    return ImagePath(label, lambda batch: model.generate(n=batch, seed=0), on_cpu)


def bare_module_path(generator: Any, cuda: bool) -> ImagePath:
    """The peer: the module the generator exports (its first graph in ``export_spec()``), run as a PyTorch user runs
    it, with no genloom wrapper: its inputs drawn as genloom draws them (float inputs from ``default_rng(0)``, the
    latents; integer inputs every class in turn, the labels), one call under ``torch.inference_mode()``, the
    images brought back to host memory. On CUDA where ``cuda`` and torch can use it, else on the CPU."""
    import torch

    graph = generator.export_spec().graphs[0]
    device = "cuda" if cuda and torch.cuda.is_available() else "cpu"
    module = copy.deepcopy(graph.module).eval().to(device)
    classes = max(int(generator.facts.get("num_classes") or 0) if generator.capabilities.conditional else 0, 1)

    def inputs(batch: int) -> list[torch.Tensor]:
        rng = np.random.default_rng(0)
        drawn = [
            rng.standard_normal((batch, *example.shape[1:]), dtype=np.float32)
            if example.dtype.is_floating_point
            else np.arange(batch, dtype=np.int64) % classes
            for example in graph.example_inputs
        ]
        return [torch.from_numpy(array).to(device) for array in drawn]

    def generate(batch: int) -> np.ndarray:
        with torch.inference_mode():
            output: np.ndarray = module(*inputs(batch)).cpu().numpy()
            return output

    return ImagePath(PEER_LABEL + (" (CUDA)" if device == "cuda" else ""), generate, device == "cpu")


def image_rows(
    name: str,
    peer: ImagePath | None,
    paths: list[ImagePath],
    flops_per_image: int,
    matmul_roof: Callable[[], float],
    batches: tuple[int, ...] = IMAGE_BATCHES,
    repeats: int = 5,
) -> list[ImageRow]:
    """Rows for each batch size: the peer's (when there is one) and each path's, compared with the peer's.
    ``matmul_roof()`` (GFLOP/s) is measured again before each batch size's rows (a shared machine drifts);
    only CPU rows get a share of it."""
    rows: list[ImageRow] = []
    for batch in batches:
        gflops = matmul_roof()
        peer_rate = None
        for path in [*([peer] if peer else []), *paths]:
            timing = time_call(functools.partial(path.generate, batch), repeats=repeats)
            rate = batch / timing.median
            peer_rate = rate if path is peer else peer_rate
            rows.append(
                ImageRow(
                    model=name,
                    path=path.label,
                    batch=batch,
                    images_per_second=rate,
                    timing=timing,
                    matmul_gflops=gflops,
                    ratio_to_peer=rate / peer_rate if peer_rate else None,
                    share_of_roof=rate * flops_per_image / (gflops * 1e9) if path.on_cpu else None,
                )
            )
    return rows


def image_flops(graph_file: Path) -> int:
    """FLOPs to make one image: the export's first graph at batch 1."""
    return graph_flops(graph_file, {"batch": 1})


def bench_images(context: BenchContext) -> list[ImageRow]:
    """The image kind's benchmark: the bare torch module (the peer, when benched from a trained model) and each
    ONNX Runtime path at each batch size, beside the matmul roof."""
    if context.torch_model is None:
        peer = None
        context.peer_unavailable.append(
            f"{context.name}: peer unavailable: an export holds no torch module; "
            "bench the trained model's directory to time PyTorch"
        )
    else:
        peer = bare_module_path(context.torch_model.generator, context.cuda)
    paths = [onnx_image_path(p.label, p.model, p.on_cpu) for p in context.paths]
    return image_rows(
        context.name,
        peer,
        paths,
        image_flops(context.paths[0].graph_file),
        lambda: matmul_roof(context.repeats),
        context.batches or IMAGE_BATCHES,
        context.repeats,
    )
