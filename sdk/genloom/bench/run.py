"""``genloom bench DIR``: every path of one artifact measured side by side, with the machine and its roofs.

The rows come from the model's kind (``DataKind.bench``: images/s for images, tokens/s for text), or, for a kind
without a benchmark of its own, outputs/s of every path through ``generate``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

import genloom
from genloom.artifacts import ExportSection, read_manifest
from genloom.bench.context import BenchContext, OnnxPath
from genloom.bench.images import ImageRow
from genloom.bench.machine import Machine, describe_machine
from genloom.bench.outputs import OutputRow, bench_outputs
from genloom.bench.text import TextRow
from genloom.contracts import Providers
from genloom.install import require_training_install
from genloom.plugins import get_registry
from genloom.runtime.providers import CUDA, cuda_usable


class BenchReport(BaseModel):
    """Everything one benchmark run measured; ``--json`` writes it as is."""

    model_config = ConfigDict(extra="forbid")  # a kind's bench() returning another field is an error, not lost rows

    machine: Machine
    provider: str
    images: list[ImageRow] = []
    text: list[TextRow] = []
    outputs: list[OutputRow] = Field(
        default=[], description="Kinds without a benchmark of their own: outputs/s of every path."
    )
    peer_unavailable: list[str] = Field(
        default=[], description="Why a model's rows have no peer (their ratio_to_peer is None), one line per model."
    )


def bench_artifact(
    path: str | Path,
    *,
    repeats: int = 5,
    tokens: int = 32,
    machine: Machine | None = None,
    batches: tuple[int, ...] | None = None,
    exporter: str | None = None,
) -> BenchReport:
    """Benchmark the model or export in ``path`` (at ``batches``, by default the kind's own). A torch model is
    exported into a temporary folder first, by the exporter named ``exporter`` (by default the installed one that
    makes genloom exports), with the kind's CPU variants where it offers them and fp16 where ONNX Runtime runs on
    CUDA."""
    require_training_install("genloom bench (it times PyTorch and reads graphs with onnx)")
    directory = Path(path)
    manifest = read_manifest(directory)
    machine = machine or describe_machine()
    registry = get_registry()
    kind = registry.kind(manifest.modality)
    with tempfile.TemporaryDirectory() as scratch:
        torch_model = None
        export_dir = directory
        if manifest.kind == "model":
            torch_model = genloom.load(directory)
            export_dir = Path(scratch) / "export"
            chosen = registry.exporter(exporter).value
            chosen.export(directory, export_dir, **_variants(chosen, kind.bench_variants))
        export = read_manifest(export_dir).export
        assert export is not None
        onnx_model = genloom.load(export_dir)
        context = BenchContext(
            f"{manifest.generator} ({directory.name})",
            torch_model,
            _onnx_paths(onnx_model, export_dir, export),
            export_dir,
            registry.runtime_driver(export.driver).value,
            machine,
            repeats,
            tokens,
            batches,
        )
        rows = kind.bench(context) if kind.bench else {"outputs": bench_outputs(context, kind)}
        return BenchReport(
            machine=machine, provider=onnx_model.provider, peer_unavailable=context.peer_unavailable, **rows
        )


def _variants(exporter: Any, for_kind: tuple[str, ...]) -> dict[str, bool]:
    """The kind's CPU variants (int8 and q8 for text) and, on CUDA, fp16, as far as the exporter offers them."""
    wanted = [*for_kind, *(["fp16"] if cuda_usable() else [])]
    return {name: True for name in wanted if name in exporter.options}


def _onnx_paths(onnx_model: Any, export_dir: Path, export: ExportSection) -> list[OnnxPath]:
    """fp32 where the export loaded, each CPU variant (int8, q8, ...) on the CPU, and fp16 on CUDA, as far as the
    export has them."""
    on_cpu = onnx_model.provider != CUDA
    graph = export.graphs[0]
    paths = [OnnxPath(f"onnxruntime fp32{'' if on_cpu else ' (CUDA)'}", onnx_model, on_cpu, export_dir / graph.file)]
    for precision, file in graph.variants.items():
        if precision == "fp16" and on_cpu:
            continue
        provider: Providers = "cuda" if precision == "fp16" else "cpu"
        label = f"onnxruntime {precision}{' (CUDA)' if provider == 'cuda' else ''}"
        model = genloom.load(export_dir, providers=provider, precision=precision)
        paths.append(OnnxPath(label, model, provider == "cpu", export_dir / file))
    return paths
