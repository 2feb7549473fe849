"""Running ONNX exports with ONNX Runtime, on CUDA or the CPU, without torch.

Imports numpy, onnxruntime (when a model opens), pydantic and tokenizers only.
``genloom.load(EXPORT_DIR)`` lands here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genloom.artifacts import Manifest
from genloom.errors import NotAvailableError
from genloom.runtime.image import OnnxImageModel
from genloom.runtime.providers import Providers

__all__ = ["OnnxImageModel", "load_export"]


def load_export(directory: Path, manifest: Manifest, providers: Providers = "auto", session_options: Any = None) -> OnnxImageModel:
    """Open an export directory with the driver its manifest names."""
    driver = (manifest.export or {}).get("driver")
    if driver != "image-from-latent":
        raise NotAvailableError(f"'{directory}' needs the runtime driver '{driver}', which this version of genloom does not have yet")
    return OnnxImageModel(directory, manifest, providers, session_options)
