"""``copula``: a Gaussian copula, the fast baseline without a neural network.

Each column's values become normal scores through its own marginal (numbers: their empirical quantiles;
categories: an interval of [0, 1] per category, as wide as its share, missing values a category of their own); the
scores' correlation is fitted once. Sampling draws correlated normals, turns them into uniforms (the exported
graph) and each uniform into a value through its column's marginal (numpy). Missing numbers are drawn at the
column's missing share. Nothing is trained by gradient steps: ``steps`` is 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import Field

from genloom.errors import ConfigError
from genloom_tabular.base import TableConfig, TabularGenerator
from genloom_tabular.codec import CopulaCodec, Marginal, choice_frequencies
from genloom_tabular.data import TableData
from genloom_tabular.schema import TableSchema
from genloom_tabular.transform import category_indices

if TYPE_CHECKING:
    import torch

QUANTILES = 512
"""Points of each numeric column's quantile function."""
FIT_SEED = 0
"""Seed of the positions drawn for categories inside their intervals when the correlation is fitted."""


class CopulaConfig(TableConfig):
    """Knobs of ``copula``."""

    steps: int = Field(1, ge=1, description="Nothing is trained by steps: the copula is fitted to the table at once.")


class GaussianCopula(TabularGenerator):
    """Gaussian copula over empirical marginals."""

    name = "copula"
    Config = CopulaConfig
    description = "Gaussian copula over empirical marginals (fast baseline, no neural network)"
    config: CopulaConfig
    codec: CopulaCodec

    def fit_codec(self, frame: pd.DataFrame, schema: TableSchema) -> CopulaCodec:
        from scipy.special import ndtri

        rng = np.random.default_rng(FIT_SEED)
        marginals, scores = [], []
        for column in schema.columns:
            values = frame[column.name]
            if column.discrete:
                cumulative = np.cumsum(choice_frequencies(column.frequencies, column.missing))
                index = category_indices(column, values)
                low = np.concatenate([[0.0], cumulative[:-1]])[index]
                u = low + rng.random(len(index)) * (cumulative[index] - low)
                marginals.append(Marginal(cumulative=cumulative.tolist()))
            else:
                present = values.notna().to_numpy()
                numbers = values.to_numpy(dtype=float, na_value=np.nan)
                ranks = pd.Series(numbers[present]).rank(method="average").to_numpy()
                u = np.full(len(values), 0.5)
                u[present] = (ranks - 0.5) / present.sum()
                quantiles = np.quantile(numbers[present], np.linspace(0, 1, QUANTILES))
                marginals.append(Marginal(quantiles=quantiles.tolist(), missing=column.missing))
            scores.append(ndtri(np.clip(u, 1e-6, 1 - 1e-6)))
        cholesky = _cholesky(np.stack(scores, axis=1))
        return CopulaCodec(schema=schema, marginals=marginals, cholesky=cholesky.tolist())

    def fit_data_from(self, data: TableData, facts: dict[str, Any], files: dict[str, bytes]) -> None:
        """A copula learns everything from the table itself, without gradient steps: nothing carries over."""
        raise ConfigError(
            "--init-from: the copula learns nothing by training steps, so there is nothing to fine-tune; fit it on "
            "the new table without --init-from"
        )

    def build(self) -> dict[str, torch.nn.Module]:
        import torch

        from genloom_tabular.nets import GaussianCopula as CopulaNet

        network = CopulaNet(len(self.codec.marginals))
        network.cholesky.copy_(torch.tensor(self.codec.cholesky, dtype=torch.float32))
        return {"copula": network}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def get_batch(self, data: TableData, rng: np.random.Generator) -> Any:
        return None

    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        return {}

    def sampling_network(self) -> torch.nn.Module:
        return self.modules["copula"]


def _cholesky(scores: np.ndarray) -> np.ndarray:
    """The Cholesky factor of the scores' correlation, made positive definite (a constant column correlates with
    nothing)."""
    spread = scores.std(axis=0)
    centred = (scores - scores.mean(axis=0)) / np.where(spread > 0, spread, 1)
    correlation = centred.T @ centred / len(scores)
    np.fill_diagonal(correlation, 1.0)
    values, vectors = np.linalg.eigh(correlation)
    correlation = (vectors * np.maximum(values, 1e-6)) @ vectors.T
    scale = np.sqrt(np.diag(correlation))
    correlation = correlation / scale[:, None] / scale[None, :]
    return np.linalg.cholesky(correlation)
