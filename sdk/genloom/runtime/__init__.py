"""Running ONNX exports with ONNX Runtime, on CUDA or the CPU, without torch.

Imports numpy, onnxruntime (when a model opens), pydantic and tokenizers only.
``genloom.load(EXPORT_DIR)`` lands here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genloom.artifacts import Manifest
from genloom.errors import NotAvailableError
from genloom.runtime.image import OnnxImageModel
from genloom.runtime.providers import Providers
from genloom.runtime.text import OnnxTextModel

__all__ = ["OnnxImageModel", "OnnxTextModel", "RuntimeDriver", "load_export"]


@dataclass(frozen=True)
class RuntimeDriver:
    """Opens one kind of export (the ``driver`` its manifest names) as a model with ``generate``."""

    name: str
    open: Callable[[Path, Manifest, Providers, Any, str], Any]
    """``open(directory, manifest, providers, session_options, precision)`` -> a model with ``generate``."""
    description: str = ""


def load_export(directory: Path, manifest: Manifest, providers: Providers = "auto", session_options: Any = None,
                precision: str = "fp32") -> Any:
    """Open an export directory with the registered runtime driver its manifest names, in ``precision``."""
    from genloom.plugins import get_registry

    driver = (manifest.export or {}).get("driver")
    registry = get_registry()
    if driver not in registry.names("runtime driver"):
        known = ", ".join(registry.names("runtime driver")) or "none"
        raise NotAvailableError(f"'{directory}' needs the runtime driver '{driver}', which no installed plugin provides (installed: {known})")
    return registry.runtime_driver(driver).value.open(directory, manifest, providers, session_options, precision)
