"""What happens around a tabular generator's network when it samples: the network's inputs drawn from the seed, its
output decoded into rows, and conditions met. All numpy: PyTorch and ONNX Runtime run only the network, so a seed
gives the same rows from both.

A codec is saved as JSON: in a trained model's ``codec.json`` and, with the network's learned output scales filled
in, in its export's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError

from genloom.config import StrictModel
from genloom.errors import ArtifactError, ConfigError
from genloom_tabular.schema import TableSchema, build_frame
from genloom_tabular.transform import ModeTransform

CHUNK_ROWS = 65_536
"""Rows the network makes in one run."""
MAX_DRAWS = 200
"""Conditional sampling gives up when it has drawn this many times the rows asked for and still lacks some."""

Network = Callable[[dict[str, np.ndarray]], np.ndarray]
"""The network: its named float32 inputs -> its output ``rows``."""


class ModeCodec(StrictModel):
    """CTGAN and TVAE: noise (and CTGAN's conditional vector) in, an encoded row of :class:`ModeTransform` out."""

    type: Literal["modes"] = "modes"
    transform: ModeTransform
    noise_dim: int = Field(description="Standard-normal values the network makes a row from.")
    conditional: bool = Field(description="The network takes a conditional vector 'cond' (CTGAN).")
    sigmas: list[float] | None = Field(None, description="TVAE: the noise scale of each output (0: none).")
    choice_temperature: float = Field(
        1.0, ge=0, description="Temperature of the softmax each one-hot is sampled from (0: the likeliest choice)."
    )

    @property
    def schema_(self) -> TableSchema:
        return self.transform.schema_

    @property
    def cond_dim(self) -> int:
        """Width of the conditional vector: one slot per category (missing included) of every discrete column; 1
        (always 0) for a table without one."""
        return sum(coding.choice.size for _, coding in self.transform.discrete) or 1

    @property
    def input_names(self) -> list[str]:
        """The network's inputs, in order: what :meth:`inputs` draws."""
        return ["noise", "cond"] if self.conditional else ["noise"]

    def inputs(self, n: int, rng: np.random.Generator, conditions: Mapping[str, int]) -> dict[str, np.ndarray]:
        noise = rng.standard_normal((n, self.noise_dim), dtype=np.float32)
        if not self.conditional:
            return {"noise": noise}
        return {"noise": noise, "cond": self.cond_vectors(n, rng, conditions)}

    def cond_vectors(self, n: int, rng: np.random.Generator, conditions: Mapping[str, int]) -> np.ndarray:
        """With a condition, its category's one-hot in every row (the first condition: the network was trained on
        one column at a time); without, a discrete column and a category in its training frequency, per row."""
        cond = np.zeros((n, self.cond_dim), dtype=np.float32)
        columns = self.transform.discrete
        if not columns:
            return cond
        offsets = np.cumsum([0] + [coding.choice.size for _, coding in columns])
        if conditions:
            name, category = next(iter(conditions.items()))
            position = next(i for i, (column, _) in enumerate(columns) if column.name == name)
            cond[:, offsets[position] + category] = 1
            return cond
        picked = rng.integers(0, len(columns), n)
        draws = rng.random(n)
        for position, (column, _) in enumerate(columns):
            rows = np.flatnonzero(picked == position)
            shares = np.cumsum(choice_frequencies(column.frequencies, column.missing))
            category = np.minimum(np.searchsorted(shares, draws[rows] * shares[-1], side="right"), len(shares) - 1)
            cond[rows, offsets[position] + category] = 1
        return cond

    def decode(self, rows: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        sigmas = None if self.sigmas is None else np.asarray(self.sigmas)
        return self.transform.decode(rows, rng, sigmas, self.choice_temperature)


class Marginal(StrictModel):
    """One column of the copula: numeric quantiles, or cumulative category shares (missing last, if any)."""

    quantiles: list[float] = Field(default_factory=list, description="Numeric: values at evenly spaced ranks.")
    cumulative: list[float] = Field(default_factory=list, description="Discrete: cumulative shares of the choices.")
    missing: float = 0.0


class CopulaCodec(StrictModel):
    """The Gaussian copula: the network turns noise into correlated uniforms; each column's marginal, into values."""

    type: Literal["copula"] = "copula"
    schema_: TableSchema = Field(alias="schema")
    marginals: list[Marginal]
    cholesky: list[list[float]] = Field(description="The Cholesky factor of the normal scores' correlation.")

    input_names: ClassVar[list[str]] = ["noise"]
    """The network's input: what :meth:`inputs` draws."""

    def inputs(self, n: int, rng: np.random.Generator, conditions: Mapping[str, int]) -> dict[str, np.ndarray]:
        return {"noise": rng.standard_normal((n, len(self.marginals)), dtype=np.float32)}

    def decode(self, uniforms: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        uniforms = np.clip(np.asarray(uniforms, dtype=np.float64), 0.0, 1.0)
        gaps = rng.random(uniforms.shape)
        values: dict[str, np.ndarray] = {}
        missing: dict[str, np.ndarray] = {}
        for index, (column, marginal) in enumerate(zip(self.schema_.columns, self.marginals, strict=True)):
            u = uniforms[:, index]
            if column.discrete:
                cumulative = np.asarray(marginal.cumulative)
                choice = np.minimum(np.searchsorted(cumulative, u * cumulative[-1], side="right"), len(cumulative) - 1)
                if column.missing > 0:
                    missing[column.name] = choice == len(column.categories)
                    choice = np.minimum(choice, len(column.categories) - 1)
                values[column.name] = choice
                continue
            grid = np.linspace(0, 1, len(marginal.quantiles))
            values[column.name] = np.interp(u, grid, marginal.quantiles)
            if marginal.missing > 0:
                missing[column.name] = gaps[:, index] < marginal.missing
        return build_frame(self.schema_, values, missing)


Codec = Annotated[ModeCodec | CopulaCodec, Field(discriminator="type")]


class SavedCodec(StrictModel):
    """``codec.json``."""

    codec: Codec

    @classmethod
    def read(cls, data: bytes, name: str) -> ModeCodec | CopulaCodec:
        """The codec in a model's or an export's file ``name``; an ArtifactError when it is not one this plugin
        reads."""
        try:
            return cls.model_validate_json(data).codec
        except ValidationError as error:
            raise ArtifactError(
                f"{name} is not a codec this version of genloom_tabular reads ({error.errors()[0]['msg']} at "
                f"{'.'.join(map(str, error.errors()[0]['loc']))}); train or export the model again"
            ) from None


def choice_frequencies(frequencies: list[float], missing: float) -> np.ndarray:
    """Each category's share of all rows, then the missing share when the column had missing values."""
    shares = np.asarray(frequencies) * (1 - missing)
    return np.append(shares, missing) if missing > 0 else shares


def generate_rows(
    codec: ModeCodec | CopulaCodec,
    network: Network,
    n: int,
    rng: np.random.Generator,
    conditions: Mapping[str, object] | None,
) -> pd.DataFrame:
    """``n`` rows from the network, in pieces of :data:`CHUNK_ROWS`. Under ``conditions``, rows that do not meet
    them are dropped and more are drawn, up to :data:`MAX_DRAWS` times ``n``; a ConfigError (the condition is too
    rare for the model) once that is spent, or as soon as a piece's worth of draws shows fewer than one row in
    :data:`MAX_DRAWS` meets them."""
    schema = codec.schema_
    wanted = schema.conditions(conditions)
    kept: list[pd.DataFrame] = []
    have = drawn = 0
    while have < n:
        size = min(CHUNK_ROWS, n - have) if not wanted else min(CHUNK_ROWS, max(64, 2 * (n - have)))
        frame = codec.decode(network(codec.inputs(size, rng, wanted)), rng)
        drawn += size
        if wanted:
            match = np.ones(len(frame), dtype=bool)
            for name, category in wanted.items():
                match &= (frame[name] == schema.column(name).categories[category]).to_numpy(dtype=bool)
            frame = frame[match]
        kept.append(frame)
        have += len(frame)
        if have < n and (drawn >= MAX_DRAWS * n or (drawn >= CHUNK_ROWS and have * MAX_DRAWS < drawn)):
            raise ConfigError(
                f"conditions {dict(conditions or {})}: only {have} of {drawn} generated rows met them; the model "
                "rarely makes such rows (train longer, or ask for fewer conditions)"
            )
    return pd.concat(kept, ignore_index=True).iloc[:n].reset_index(drop=True)
