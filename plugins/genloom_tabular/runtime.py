"""The ``table-from-noise`` runtime driver: a tabular export's network run by ONNX Runtime, its inputs drawn and its
output decoded by the same numpy codec as the trained model's, so a seed gives the same rows. Imports no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genloom.artifacts import Manifest
from genloom.config import validate_model
from genloom.runtime import OnnxModel
from genloom_tabular.codec import SavedCodec, generate_rows
from genloom_tabular.kind import TableResult, TableSampling


class TableFromNoise:
    """Feeds the first graph ``noise`` (and ``cond`` where the graph has it) as the codec draws them; reads ``rows``,
    which the codec named by the ``codec`` option decodes into the table."""

    name = "table-from-noise"
    kind = "table"
    description = "noise (and a conditional vector) -> encoded rows -> a table, decoded in numpy"
    inputs = ("noise",)
    outputs = ("rows",)
    options = ("codec",)

    def open(
        self, directory: Path, manifest: Manifest, providers: Any, session_options: Any, precision: str
    ) -> OnnxTableModel:
        return OnnxTableModel(directory, manifest, providers, session_options, precision)


class OnnxTableModel(OnnxModel):
    """An exported tabular generator: ``generate(n=, seed=, conditions=)`` as on the trained model."""

    def __init__(self, directory: Path, manifest: Manifest, providers: Any, session_options: Any, precision: str):
        super().__init__(directory, manifest)
        self.require_options(list(TableFromNoise.options))
        graph = self.export.graphs[0].name
        self.onnx = self.open_graph(graph, providers, session_options, precision)
        codec_file = self.listed_file("codec")
        self.codec = SavedCodec.read(codec_file.read_bytes(), codec_file.name)
        self.require_io(self.onnx, graph, self.codec.input_names, list(TableFromNoise.outputs))

    def generate(self, **settings: Any) -> TableResult:
        request = validate_model(TableSampling, settings, what="sampling settings")

        def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
            (rows,) = self.onnx.run(["rows"], inputs)
            return np.asarray(rows)

        frame = generate_rows(self.codec, run, request.n, request.rng(), request.conditions)
        return TableResult(frame, self.provenance(request.seed, request.model_dump()))
