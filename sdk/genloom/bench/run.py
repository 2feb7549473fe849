"""``genloom bench DIR``: every path of one artifact measured side by side, with the machine and its roofs."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, Field

import genloom
from genloom.bench.flops import weight_bytes_read
from genloom.bench.images import ImagePath, ImageRow, bare_module_path, image_flops, image_rows, onnx_image_path
from genloom.bench.machine import Machine, describe_machine, matmul_roof, read_bandwidth
from genloom.bench.text import Decoder, TextRow, genloom_decoder, text_rows, torch_weight_bytes, transformers_decoder
from genloom.runtime.providers import CUDA, cuda_usable


class BenchReport(BaseModel):
    """Everything one benchmark run measured; ``--json`` writes it as is."""

    machine: Machine
    provider: str
    images: list[ImageRow] = []
    text: list[TextRow] = []
    peer_unavailable: list[str] = Field(default=[], description="Why a model's rows have no peer (their ratio_to_peer is None), one line per model.")


def bench_artifact(path: str | Path, *, repeats: int = 5, tokens: int = 32, machine: Machine | None = None,
                   image_batches: tuple[int, ...] = (1, 8, 64, 256), text_batches: tuple[int, ...] = (1, 8)) -> BenchReport:
    """Benchmark the model or export in ``path``. A torch model is exported into a temporary folder first:
    fp32, int8 for text, and fp16 where ONNX Runtime runs on CUDA."""
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
            genloom.plugins.get_registry().exporter("onnx").value.export(
                directory, export_dir, int8=manifest.modality == "text", fp16=cuda_usable())
        export = read_manifest(export_dir).export or {}
        onnx_model = genloom.load(export_dir)
        report = BenchReport(machine=machine, provider=onnx_model.provider)
        name = f"{manifest.generator} ({directory.name})"
        paths = _onnx_paths(onnx_model, export_dir, export)
        cuda = not paths[0].on_cpu
        if manifest.modality == "image":
            peer, missing = _image_peer(torch_model, cuda)
            report.images = image_rows(name, peer, [onnx_image_path(p.label, p.model, p.on_cpu) for p in paths],
                                       image_flops(export_dir, export), lambda: matmul_roof(repeats), image_batches, repeats)
        else:
            peer, missing = _text_peer(paths, export, cuda)
            report.text = text_rows(name, peer, _text_decoders(torch_model, paths, export), lambda: read_bandwidth(repeats),
                                    tokens, text_batches, repeats)
        if peer is None:
            report.peer_unavailable.append(f"{name}: peer unavailable: {missing}")
    return report


class OnnxPath(NamedTuple):
    """One way the export runs: its row label, the loaded model, whether it runs on the CPU, and its graph file."""

    label: str
    model: Any
    on_cpu: bool
    graph_file: Path


def _onnx_paths(onnx_model: Any, export_dir: Path, export: dict[str, Any]) -> list[OnnxPath]:
    """fp32 where the export loaded, int8 on the CPU (ONNX Runtime quantizes for CPUs), and fp16 on CUDA."""
    on_cpu = onnx_model.provider != CUDA
    graph = export["graphs"][0]
    available = graph.get("variants", {})
    paths = [OnnxPath(f"onnxruntime fp32{'' if on_cpu else ' (CUDA)'}", onnx_model, on_cpu, export_dir / graph["file"])]
    if "int8" in available:
        paths.append(OnnxPath("onnxruntime int8", genloom.load(export_dir, providers="cpu", precision="int8"), True,
                              export_dir / available["int8"]))
    if "fp16" in available and not on_cpu:
        paths.append(OnnxPath("onnxruntime fp16 (CUDA)", genloom.load(export_dir, providers="cuda", precision="fp16"), False,
                              export_dir / available["fp16"]))
    return paths


def _image_peer(torch_model: Any, cuda: bool) -> tuple[ImagePath | None, str]:
    """The peer of an image model: its bare torch module; None and why for an export (it holds none)."""
    if torch_model is None:
        return None, "an export holds no torch module; bench the trained model's directory to time PyTorch"
    return bare_module_path(torch_model.generator, cuda), ""


def _text_peer(paths: list[OnnxPath], export: dict[str, Any], cuda: bool) -> tuple[Decoder | None, str]:
    """The peer of a GPT-style export (a Hugging Face GPT-2 of its shape), or None and why there is none."""
    if export.get("driver") != "text-decoder":
        return None, f"transformers has no peer of the '{export.get('driver')}' driver"
    options = export.get("driver_options", {})
    try:
        return transformers_decoder(options["layers"], options["heads"], options["heads"] * options["head_dim"],
                                    options["context_length"], int(paths[0].model.manifest.facts["vocab_size"]), cuda), ""
    except ImportError as missing:
        return None, f"{missing.name or 'transformers'} is not installed (the peer is transformers on torch)"


def _text_decoders(torch_model: Any, paths: list[OnnxPath], export: dict[str, Any]) -> list[Decoder]:
    """genloom's own paths: the torch model (when benched from a trained directory) and each ONNX Runtime path."""
    decoders = []
    if torch_model is not None:
        label = "genloom torch (KV cache)" if export.get("driver") == "text-decoder" else "genloom torch (state)"
        decoders.append(genloom_decoder(label, torch_model, torch_weight_bytes(torch_model.generator), on_cpu=True))
    decoders += [genloom_decoder(p.label, p.model, weight_bytes_read(p.graph_file), p.on_cpu) for p in paths]
    return decoders
