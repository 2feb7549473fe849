"""``genloom bench DIR``: every path of one artifact measured side by side, with the machine and its roofs."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import genloom
from genloom.bench.images import ImageRow, image_flops, image_rows
from genloom.bench.machine import Machine, describe_machine
from genloom.bench.text import TextRow, genloom_decoder, onnx_weight_bytes, text_rows, torch_weight_bytes, transformers_decoder


class BenchReport(BaseModel):
    """Everything one benchmark run measured; ``--json`` writes it as is."""

    machine: Machine
    provider: str
    images: list[ImageRow] = []
    text: list[TextRow] = []


def bench_artifact(path: str | Path, *, repeats: int = 5, tokens: int = 32, machine: Machine | None = None,
                   image_batches: tuple[int, ...] = (1, 8, 64, 256), text_batches: tuple[int, ...] = (1, 8)) -> BenchReport:
    """Benchmark the model or export in ``path``. A torch model is exported (fp32, and int8 for text) into a temporary folder first."""
    from genloom.artifacts import read_manifest

    directory = Path(path)
    manifest = read_manifest(directory)
    machine = machine or describe_machine()
    with tempfile.TemporaryDirectory() as scratch:
        torch_model = None
        export_dir = directory
        if manifest.kind == "model":
            torch_model = genloom.load(directory)
            export_dir = Path(scratch) / "export"
            genloom.plugins.get_registry().exporter("onnx").value.export(directory, export_dir, int8=manifest.modality == "text")
        export = read_manifest(export_dir).export or {}
        onnx_model = genloom.load(export_dir)
        report = BenchReport(machine=machine, provider=onnx_model.info()["provider"])
        name = f"{manifest.generator} ({directory.name})"
        if manifest.modality == "image":
            report.images = image_rows(name, torch_model, onnx_model, image_flops(export_dir, export), machine.matmul_gflops,
                                       image_batches, repeats)
        else:
            report.text = text_rows(name, _text_decoders(torch_model, onnx_model, export_dir, export), machine.read_gbytes_per_second,
                                    tokens, text_batches, repeats)
    return report


def _text_decoders(torch_model: Any, onnx_model: Any, export_dir: Path, export: dict[str, Any]) -> list[Any]:
    decoders = []
    options = export.get("driver_options", {})
    if export.get("driver") == "text-decoder":
        peer = transformers_decoder(options["layers"], options["heads"], options["heads"] * options["head_dim"],
                                    options["context_length"], int(onnx_model.manifest.facts["vocab_size"]))
        if peer is not None:
            decoders.append(peer)
    if torch_model is not None:
        label = "genloom torch (KV cache)" if export.get("driver") == "text-decoder" else "genloom torch (state)"
        decoders.append(genloom_decoder(label, torch_model, torch_weight_bytes(torch_model.generator)))
    decoders.append(genloom_decoder("onnxruntime fp32", onnx_model, onnx_weight_bytes(export_dir, export, "fp32")))
    if "int8" in export["graphs"][0].get("variants", {}):
        int8 = genloom.load(export_dir, providers="cpu", precision="int8")
        decoders.append(genloom_decoder("onnxruntime int8", int8, onnx_weight_bytes(export_dir, export, "int8")))
    return decoders
