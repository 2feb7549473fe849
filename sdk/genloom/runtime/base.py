"""What every ONNX Runtime model shares: its export description, graph files by precision, and the provider in use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genloom.artifacts import MANIFEST_FILE, ExportSection, Manifest, check_listed_file
from genloom.errors import ArtifactError, ConfigError, GenloomError
from genloom.model import LoadedModel
from genloom.runtime.graphfile import external_data_locations
from genloom.runtime.providers import Providers, create_session


@dataclass
class BatchPart:
    """One request of a one-shot model, ready to run in a batch with others: its graph inputs (its rows on the first
    axis of each) and ``finish``, which makes its result from its rows of the graph's outputs."""

    feeds: dict[str, np.ndarray]
    finish: Callable[[dict[str, np.ndarray]], Any]

    @property
    def rows(self) -> int:
        """The rows it adds to a batch."""
        return len(next(iter(self.feeds.values())))


class OnnxModel(LoadedModel):
    """An export opened with ONNX Runtime; subclasses set ``onnx``, the session whose provider is reported."""

    backend = "onnxruntime"

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        super().__init__(directory, manifest)
        if manifest.export is None:
            raise ArtifactError(f"'{directory}' is a trained torch model, not an export; load it with genloom.load()")
        self.export: ExportSection = manifest.export
        self.graph_sessions: dict[str, Any] = {}
        """Every graph opened so far, by name: what ``genloom serve``'s v2 ``infer`` route runs."""

    onnx: Any

    @property
    def provider(self) -> str:
        """The execution provider in use (``CUDAExecutionProvider`` or ``CPUExecutionProvider``)."""
        return str(self.onnx.get_providers()[0])

    @property
    def device(self) -> str:
        return self.provider

    def info(self) -> dict[str, Any]:
        return {**super().info(), "provider": self.provider}

    def open_graph(
        self, graph: str, providers: Providers, session_options: Any, precision: str, cpu_threads: int = 0
    ) -> Any:
        """An ONNX Runtime session on ``graph`` in ``precision`` (``fp32``, or a variant the export was made with);
        without ``session_options``, each operator runs on ``cpu_threads`` threads (0: one per core)."""
        entry = next(g for g in self.export.graphs if g.name == graph)
        files = {"fp32": entry.file, **entry.variants}
        if precision not in files:
            raise ConfigError(
                f"precision: this export has {', '.join(files)}, not {precision!r}; re-export with --{precision} to "
                "add it"
            )
        path = self.directory / files[precision]
        self._check_external_data(path)
        try:
            session = create_session(str(path), providers, session_options, cpu_threads)
        except GenloomError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types for a graph it cannot open
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ArtifactError(
                f"{path}: ONNX Runtime cannot open this graph ({reason}); the export is damaged: re-export the model"
            ) from None
        self.graph_sessions[graph] = session
        return session

    def listed_file(self, option: str) -> Path:
        """The file that ``driver_options[option]`` names, once checked to be one the manifest lists and hashes."""
        name = self.export.driver_options.get(option)
        where = f"export.driver_options.{option}"
        return self.directory / check_listed_file(self.manifest, name, where, self.directory / MANIFEST_FILE)

    def require_options(self, needed: list[str]) -> None:
        """An ArtifactError unless the manifest's ``driver_options`` hold every key in ``needed``."""
        missing = [name for name in needed if name not in self.export.driver_options]
        if missing:
            raise ArtifactError(
                f"{self.directory / MANIFEST_FILE}: export.driver_options lacks {', '.join(missing)}, which the "
                f"'{self.export.driver}' driver needs; re-export the model"
            )

    def graph_bytes(self, file: str) -> int:
        """Size of the graph file ``file`` with the external data it names: what a session on it reads."""
        path = self.directory / file
        listed = [location for location in external_data_locations(path) if location in self.manifest.files]
        return path.stat().st_size + sum((self.directory / location).stat().st_size for location in listed)

    def _check_external_data(self, path: Path) -> None:
        """Every external-data file the graph names is one of the files the manifest lists (and the hashes cover)."""
        for location in sorted(external_data_locations(path)):
            if location not in self.manifest.files:  # whose names read_manifest checked are plain
                raise ArtifactError(
                    f"{path} keeps weights in external data {location!r}, which is not among the files "
                    "the manifest lists and hashes; an export opens only its own files: re-export the model"
                )

    def require_io(self, session: Any, graph: str, inputs: list[str], outputs: list[str]) -> None:
        """An ArtifactError unless ``session`` has the ``inputs`` and ``outputs`` the driver feeds and reads."""
        have_inputs, have_outputs = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
        missing = [n for n in inputs if n not in have_inputs] + [n for n in outputs if n not in have_outputs]
        if missing:
            raise ArtifactError(
                f"graph '{graph}' has inputs {have_inputs} and outputs {have_outputs}, but the "
                f"'{self.export.driver}' driver needs inputs {inputs} and outputs {outputs} (missing: "
                f"{', '.join(missing)}); the graph does not belong to this export: re-export the model"
            )
