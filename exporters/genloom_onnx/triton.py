"""The ``triton`` exporter: an NVIDIA Triton Inference Server model repository from a genloom model.

``genloom export DIR --exporter triton --out REPO`` writes, for each graph of the model's ONNX export (made first,
with its parity gate, when DIR is a trained model; taken as it is when DIR is an export already),
``REPO/NAME/config.pbtxt`` and ``REPO/NAME/1/model.onnx`` (with any external-data file beside it): the
onnxruntime backend, the batch axis as Triton's ``max_batch_size`` (every other free axis -1), dynamic batching and
an instance group on the CPU or the GPU. Then ``tritonserver --model-repository REPO`` serves it.

The text decoder is not offered: its KV cache is one fixed-capacity buffer per layer that the graph updates in
place for each row's own length (ONNX Runtime's GroupQueryAttention), which Triton's implicit-state sequence
batching cannot hold (it keeps one state tensor per sequence, grown by concatenation); serve text with
``genloom serve``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genloom.artifacts import read_manifest
from genloom.errors import ConfigError
from genloom.fileio import atomic_write_text, check_output_directory
from genloom.runtime.graphfile import external_data_locations

TRITON_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 7: "TYPE_INT64", 6: "TYPE_INT32", 9: "TYPE_BOOL", 3: "TYPE_INT8"}
"""ONNX tensor element types -> Triton's data types."""
NOT_OFFERED = {
    "text-decoder": "the text decoder keeps its KV cache in place per row, which Triton's sequence batching cannot "
    "hold (see this module's docstring); serve text with `genloom serve`",
    "text-recurrent": "the LSTM's state (layers, batch, width) has its batch on the second axis, which Triton's "
    "batching cannot split; serve text with `genloom serve`",
}
TRITON_REPOSITORY = "triton-repository"


@dataclass(frozen=True)
class TritonRepository:
    """What the exporter wrote: the models of the repository, by name, under ``directory``."""

    generator: str
    directory: Path
    models: list[str]


class TritonExporter:
    """``export(model_dir, out_dir, *, name=None, max_batch_size=64, max_queue_delay_us=100, instance="cpu",
    count=1)``."""

    name = "triton"
    produces = TRITON_REPOSITORY
    description = (
        "a Triton Inference Server model repository (onnxruntime backend, dynamic batching) of the ONNX export"
    )
    options = ("name", "max_batch_size", "max_queue_delay_us", "instance", "count")

    def export(
        self,
        model_dir: str | Path,
        out_dir: str | Path,
        *,
        name: str | None = None,
        max_batch_size: int = 64,
        max_queue_delay_us: int = 100,
        instance: str = "cpu",
        count: int = 1,
    ) -> TritonRepository:
        """Write the repository into ``out_dir`` (new or empty); return what it holds."""
        out = check_output_directory(Path(out_dir), "--out", empty=True)
        if instance not in ("cpu", "gpu"):
            raise ConfigError(f"instance: {instance!r} is neither 'cpu' nor 'gpu'; use one of them")
        for option, value, least in (("max_batch_size", max_batch_size, 1), ("count", count, 1),
                                     ("max_queue_delay_us", max_queue_delay_us, 0)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{option}: {value!r} is not an integer of at least {least}")
        source = Path(model_dir)
        manifest = read_manifest(source)
        driver = manifest.export.driver if manifest.export is not None else _driver_of(source)
        if driver in NOT_OFFERED:
            raise ConfigError(f"--exporter triton: {NOT_OFFERED[driver]}")
        with tempfile.TemporaryDirectory(prefix="genloom-triton-") as scratch:
            export_dir = source if manifest.kind == "export" else _onnx_export(source, Path(scratch) / "export")
            export = read_manifest(export_dir).export
            assert export is not None, "an export's manifest has its export section"
            graphs = export.graphs
            base = str(name or source.resolve().name)
            if not base or "/" in base:
                raise ConfigError(f"name: {base!r} cannot name a Triton model; give --option name=NAME")
            models = []
            for graph in graphs:
                model_name = base if len(graphs) == 1 else f"{base}-{graph.name}"
                _write_model(export_dir / graph.file, out / model_name, model_name, max_batch_size,
                             max_queue_delay_us, instance, count)  # fmt: skip
                models.append(model_name)
        return TritonRepository(manifest.generator, out, models)


def _driver_of(model_dir: Path) -> str | None:
    """The runtime driver the trained model's export would have (None: it describes no export)."""
    import genloom
    from genloom.model import TorchModel

    model = genloom.load(model_dir)
    assert isinstance(model, TorchModel), "a manifest of kind 'model' loads as a TorchModel"
    spec = model.generator.export_spec()
    return spec.driver if spec is not None else None


def _onnx_export(model_dir: Path, out: Path) -> Path:
    from genloom_onnx.exporter import OnnxExporter

    OnnxExporter().export(model_dir, out)
    return out


def _write_model(
    graph_file: Path, folder: Path, name: str, max_batch_size: int, delay_us: int, instance: str, count: int
) -> None:
    """``folder/config.pbtxt`` and ``folder/1/model.onnx`` (and its external data) for one graph."""
    import onnx

    model = onnx.load(str(graph_file), load_external_data=False)
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [_tensor(value, "input") for value in model.graph.input if value.name not in initializers]
    outputs = [_tensor(value, "output") for value in model.graph.output]  # checked before anything is written
    version = folder / "1"
    version.mkdir(parents=True)
    shutil.copyfile(graph_file, version / "model.onnx")
    for location in external_data_locations(graph_file):
        shutil.copyfile(graph_file.parent / location, version / location)
    kind = "KIND_GPU" if instance == "gpu" else "KIND_CPU"
    text = "\n".join(
        [
            f'name: "{name}"',
            'backend: "onnxruntime"',
            f"max_batch_size: {max_batch_size}",
            "input [",
            ",\n".join(inputs),
            "]",
            "output [",
            ",\n".join(outputs),
            "]",
            f"dynamic_batching {{ max_queue_delay_microseconds: {delay_us} }}",
            f"instance_group [ {{ kind: {kind} count: {count} }} ]",
            "",
        ]
    )
    atomic_write_text(folder / "config.pbtxt", text)


def _tensor(value: Any, role: str) -> str:
    """One ``input``/``output`` entry: the graph's name and type, its axes after the batch axis (-1 where free)."""
    tensor = value.type.tensor_type
    if tensor.elem_type not in TRITON_TYPES:
        raise ConfigError(f"{role} '{value.name}': ONNX element type {tensor.elem_type} has no Triton data type here")
    axes = list(tensor.shape.dim)
    if not axes or axes[0].HasField("dim_value"):
        raise ConfigError(f"{role} '{value.name}': its first axis is not a free batch axis; re-export the model")
    dims = [str(axis.dim_value) if axis.HasField("dim_value") else "-1" for axis in axes[1:]]
    # One value per row (a label): Triton wants an axis besides the batch, so [1], reshaped to [] for the graph.
    shape = f"dims: [ {', '.join(dims)} ]" if dims else "dims: [ 1 ] reshape: { shape: [ ] }"
    return f'  {{ name: "{value.name}" data_type: {TRITON_TYPES[tensor.elem_type]} {shape} }}'
