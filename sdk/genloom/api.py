"""The public API: three lines from a model directory to generated output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genloom.artifacts import Manifest, load_generator, read_manifest
from genloom.model import TorchModel
from genloom.plugins import get_registry


def load(path: str | Path, *, providers: str = "auto", session_options: Any = None, precision: str = "fp32") -> Any:
    """Open a model directory (hashes and format checked) and return a model with ``generate``.

    A trained model runs in PyTorch; an ONNX export (``genloom export``) runs in ONNX
    Runtime without torch, on ``providers`` ``"auto"`` (CUDA when it works, else the
    CPU), ``"cuda"`` or ``"cpu"``, with optional ``onnxruntime.SessionOptions``, in
    ``precision`` ``"fp32"`` or a variant the export was made with (``"fp16"``, ``"int8"``).
    """
    directory = Path(path)
    manifest = read_manifest(directory)
    if manifest.kind == "export":
        from genloom.runtime import load_export

        return load_export(directory, manifest, providers, session_options, precision)
    return TorchModel(load_generator(directory, manifest), manifest, directory)


def train(
    generator: str,
    data: str,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    **config: Any,
) -> Manifest:
    """Train the generator registered as ``generator`` on the ``data`` source into ``out``.

    Keyword arguments are config values, e.g. ``train("gan", "digits", "out", steps=500)``.
    """
    from genloom.fileio import check_output_directory
    from genloom.training import train as run_training

    check_output_directory(Path(out), "--out", empty=False)  # before a data source is read
    registry = get_registry()
    generator_cls = registry.generator(generator).value
    dataset = registry.open_data(data)
    return run_training(generator_cls, dataset, out, config, resume=resume, progress=progress)
