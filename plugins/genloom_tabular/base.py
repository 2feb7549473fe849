"""What the tabular generators share: the config of the table (column types, ranges, target), the schema and codec
they learn from the training table, sampling through the codec, and the export."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

import genloom
from genloom.errors import DataError
from genloom_tabular.codec import CopulaCodec, ModeCodec, SavedCodec, generate_rows
from genloom_tabular.data import TableData
from genloom_tabular.kind import TableSampling
from genloom_tabular.schema import ColumnType, TableSchema, infer_schema
from genloom_tabular.transform import fit_modes

if TYPE_CHECKING:
    import torch

CODEC_FILE = "codec.json"
"""The fitted codec, saved beside the weights."""
SAMPLING_FILE = "sampling.json"
"""The codec an export samples with (the network's learned output scales filled in)."""
ENCODING_SEED = 0
"""Seed of the modes drawn when the training rows are encoded."""


class TableConfig(genloom.GeneratorConfig):
    """Knobs every tabular generator has: how to read the table."""

    validation_fraction: float = Field(
        0.2, ge=0, lt=1, description="Share of rows held out for `genloom eval` (the same rows every run)."
    )
    checkpoint_every: int = Field(0, ge=0, description="Write a resumable checkpoint every N steps (0: at the end).")
    target: str | None = Field(
        None,
        description="The column `genloom eval` predicts for its efficacy figure (default: the data source's "
        "suggestion, e.g. species for penguins; none for a file).",
    )
    column_types: dict[str, ColumnType] = Field(
        default_factory=dict,
        description="Column types that override the inferred ones: continuous, integer, categorical or boolean.",
    )
    column_ranges: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="[low, high] of numeric columns' generated values (default: the range seen in training).",
    )


class TabularGenerator(genloom.Generator[TableSampling, pd.DataFrame, TableData]):
    """A generator of the ``table`` kind: ``sample`` returns a DataFrame with the training table's columns."""

    modality = "table"
    capabilities = genloom.Capabilities(exportable=True)
    fixed_fields: ClassVar[tuple[str, ...]] = ("target", "column_types", "column_ranges")
    config: TableConfig
    codec: ModeCodec | CopulaCodec

    @property
    def schema(self) -> TableSchema:
        return TableSchema.model_validate(self.facts["schema"])

    def fit_data(self, data: TableData) -> None:
        """Infer the schema (with the config's overrides), then fit the codec to the training rows."""
        schema = infer_schema(
            data.frame,
            source=data.source,
            types=self.config.column_types,
            ranges=self.config.column_ranges,
            target=self.config.target or data.target,
        )
        self.facts = {**data.facts(), "schema": schema.model_dump(mode="json")}
        self.codec = self.fit_codec(data.frame, schema)

    def fit_data_from(self, data: TableData, facts: dict[str, Any], files: dict[str, bytes]) -> None:
        """Fine-tuning keeps the base's schema and column transforms, so that the network's inputs and outputs mean
        what they meant; the new table must have the base's columns, in order."""
        self.restore(facts, files)
        columns = [column.name for column in self.schema.columns]
        if list(data.frame.columns) != columns:
            raise DataError(
                f"--data {data.source}: its columns {list(data.frame.columns)} are not the base's {columns}; "
                "fine-tune on a table of the same columns"
            )
        self.facts = {**data.facts(), "schema": facts["schema"]}

    @abstractmethod
    def fit_codec(self, frame: pd.DataFrame, schema: TableSchema) -> ModeCodec | CopulaCodec:
        """Fit what the generator learns from the table without gradient steps (the column transforms)."""

    def restore(self, facts: dict[str, Any], files: dict[str, bytes]) -> None:
        self.facts = dict(facts)
        self.codec = SavedCodec.read(files[CODEC_FILE], CODEC_FILE)

    def extra_files(self) -> dict[str, bytes]:
        return {CODEC_FILE: SavedCodec(codec=self.codec).model_dump_json(by_alias=True).encode()}

    def check_request(self, settings: TableSampling) -> None:
        self.schema.conditions(settings.conditions)

    def sampling_codec(self) -> ModeCodec | CopulaCodec:
        """The codec sampling runs through (TVAE fills in its learned output scales)."""
        return self.codec

    @abstractmethod
    def sampling_network(self) -> torch.nn.Module:
        """The module that turns the codec's inputs into encoded rows: what sampling runs and the export holds."""

    def sample(self, settings: TableSampling) -> pd.DataFrame:
        import torch

        codec = self.sampling_codec()
        network = self.sampling_network()

        def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
            output: torch.Tensor = network(*[torch.from_numpy(inputs[name]) for name in codec.input_names])
            return output.numpy()

        return generate_rows(codec, run, settings.n, settings.rng(), settings.conditions)

    def export_spec(self) -> genloom.ExportSpec:
        import torch

        codec = self.sampling_codec()
        examples = codec.inputs(2, np.random.default_rng(0), {})
        graph = genloom.GraphSpec(
            name="generator",
            module=self.sampling_network(),
            example_inputs=tuple(torch.from_numpy(value) for value in examples.values()),
            input_names=list(examples),
            output_names=["rows"],
            dynamic_axes={**{name: {0: "batch"} for name in examples}, "rows": {0: "batch"}},
        )
        return genloom.ExportSpec(
            driver="table-from-noise",
            graphs=[graph],
            driver_options={"codec": SAMPLING_FILE},
            files={SAMPLING_FILE: SavedCodec(codec=codec).model_dump_json(by_alias=True).encode()},
        )


class ModeConfig(TableConfig):
    """Knobs of the generators over mode-specific normalised rows."""

    latent_dim: int = Field(
        128, ge=1, le=4096, description="Size of the noise vector (latent code) a row is made from."
    )
    max_modes: int = Field(
        10, ge=1, le=100, description="Most modes of the Gaussian mixture fitted to a numeric column."
    )


class ModeGenerator(TabularGenerator):
    """A generator whose network makes rows encoded by :class:`genloom_tabular.transform.ModeTransform` (CTGAN's
    data transformer): ``ctgan`` and ``tvae``."""

    conditional: ClassVar[bool] = False
    """Whether the network takes CTGAN's conditional vector."""
    fixed_fields: ClassVar[tuple[str, ...]] = (*TabularGenerator.fixed_fields, "latent_dim", "max_modes")
    config: ModeConfig
    codec: ModeCodec

    def fit_codec(self, frame: pd.DataFrame, schema: TableSchema) -> ModeCodec:
        transform = fit_modes(frame, schema, max_modes=self.config.max_modes, seed=self.config.seed)
        return ModeCodec(transform=transform, noise_dim=self.noise_dim(), conditional=self.conditional)

    def noise_dim(self) -> int:
        """Standard-normal values a row is made from: the latent size (more where a prior maps noise to latents)."""
        return self.config.latent_dim

    def encoded_rows(self, data: TableData) -> np.ndarray:
        """The training rows encoded (once per data set, each value's mode drawn at a fixed seed)."""
        cached: tuple[int, np.ndarray] | None = getattr(self, "_encoding_cache", None)
        if cached is None or cached[0] != id(data):
            cached = (id(data), self.codec.transform.encode(data.frame, np.random.default_rng(ENCODING_SEED)))
            self._encoding_cache = cached
        return cached[1]

    def activated(self, network: torch.nn.Module) -> torch.nn.Module:
        """``network`` with tanh on the offsets of the encoded row it makes (what sampling and the export run)."""
        import torch

        from genloom_tabular.nets import Activated

        mask = torch.zeros(self.codec.transform.width, dtype=torch.bool)
        for span in self.codec.transform.spans:
            if span.activation == "tanh":
                mask[span.start : span.start + span.size] = True
        return Activated(network, mask)
