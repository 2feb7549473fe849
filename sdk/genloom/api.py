"""The public API: three lines from a model directory to generated output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genloom.artifacts import Manifest, load_generator, read_manifest
from genloom.errors import NotAvailableError
from genloom.model import TorchModel
from genloom.plugins import get_registry


def load(path: str | Path) -> TorchModel:
    """Open a model directory (hashes and format checked) and return a model with ``generate``."""
    directory = Path(path)
    manifest = read_manifest(directory)
    if manifest.kind == "export":
        raise NotAvailableError("running ONNX exports is not available yet in this version of genloom")
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
    from genloom.training import train as run_training

    registry = get_registry()
    generator_cls = registry.generator(generator).value
    dataset = registry.open_data(data)
    return run_training(generator_cls, dataset, out, config, resume=resume, progress=progress)
