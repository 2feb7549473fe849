"""What every ONNX Runtime model shares: its export description, graph files by precision, and the provider in use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genloom.artifacts import Manifest
from genloom.errors import ConfigError
from genloom.model import LoadedModel
from genloom.runtime.providers import Providers, create_session


class OnnxModel(LoadedModel):
    """An export opened with ONNX Runtime; subclasses set ``onnx``, the session whose provider is reported."""

    backend = "onnxruntime"

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        super().__init__(directory, manifest)
        self.export: dict[str, Any] = manifest.export or {}

    onnx: Any

    @property
    def provider(self) -> str:
        """The execution provider in use (``CUDAExecutionProvider`` or ``CPUExecutionProvider``)."""
        return self.onnx.get_providers()[0]

    @property
    def device(self) -> str:
        return self.provider

    def info(self) -> dict[str, Any]:
        return {**super().info(), "provider": self.provider}

    def open_graph(self, graph: str, providers: Providers, session_options: Any, precision: str, cpu_threads: int = 0) -> Any:
        """An ONNX Runtime session on ``graph`` in ``precision`` (``fp32``, or a variant the export was made with);
        without ``session_options``, each operator runs on ``cpu_threads`` threads (0: one per core)."""
        entry = next(g for g in self.export["graphs"] if g["name"] == graph)
        files = {"fp32": entry["file"], **entry.get("variants", {})}
        if precision not in files:
            raise ConfigError(f"precision: this export has {', '.join(files)}, not {precision!r}; re-export with --{precision} to add it")
        return create_session(str(self.directory / files[precision]), providers, session_options, cpu_threads)
