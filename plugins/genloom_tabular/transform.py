"""Mode-specific normalisation (CTGAN's data transformer): each numeric column as the offset of its value within a
mode of a variational Gaussian mixture plus the mode's one-hot, each categorical column as a one-hot, and a
missing-value one-hot for every column that had missing values.

Fitting uses scikit-learn (training only); encoding and decoding are numpy, so the torch-free runtime decodes an
export's output exactly as a trained model decodes its own.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from genloom.config import StrictModel
from genloom_tabular.schema import Column, TableSchema, build_frame

OFFSET_SCALE = 4.0
"""An offset is (value - mode mean) / (4 * mode std), CTGAN's choice: within a mode it lies in (-1, 1)."""
MIN_MODE_WEIGHT = 0.005
"""Mixture components lighter than this are dropped."""


class Span(StrictModel):
    """A block of the encoded row: one ``tanh`` offset, or a ``softmax`` one-hot of ``size`` choices."""

    start: int
    size: int
    activation: Literal["tanh", "softmax"]


class ColumnCoding(StrictModel):
    """How one column is encoded: its blocks, and a numeric column's modes."""

    name: str
    means: list[float] = Field(default_factory=list)
    stds: list[float] = Field(default_factory=list)
    weights: list[float] = Field(default_factory=list)
    value: Span | None = Field(None, description="Numeric: the offset within the mode.")
    choice: Span = Field(description="Numeric: the mode; categorical: the category (missing last, if any).")
    missing: Span | None = Field(None, description="Numeric columns with missing values: present or missing.")


class ModeTransform(StrictModel):
    """A fitted transformer: the schema and each column's coding, in the schema's order."""

    schema_: TableSchema = Field(alias="schema")
    columns: list[ColumnCoding]
    width: int

    @property
    def spans(self) -> list[Span]:
        return [span for c in self.columns for span in (c.value, c.choice, c.missing) if span is not None]

    @property
    def discrete(self) -> list[tuple[Column, ColumnCoding]]:
        """Categorical and boolean columns with their codings: what the conditional vector ranges over."""
        pairs = zip(self.schema_.columns, self.columns, strict=True)
        return [(column, coding) for column, coding in pairs if column.discrete]

    def known(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows hold only categories (and missing values) that the training rows had: the rows that
        :meth:`encode` can encode (held-out rows may hold others)."""
        rows = np.ones(len(frame), dtype=bool)
        for column, _ in self.discrete:
            rows &= category_indices(column, frame[column.name]) >= 0
        return rows

    def encode(self, frame: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
        """Rows -> float32 ``(N, width)``; each value's mode is drawn from its posterior, as CTGAN draws it."""
        encoded = np.zeros((len(frame), self.width), dtype=np.float32)
        rows = np.arange(len(frame))
        for column, coding in zip(self.schema_.columns, self.columns, strict=True):
            values = frame[column.name]
            gone = values.isna().to_numpy()
            if column.discrete:
                index = category_indices(column, values)
                encoded[rows, coding.choice.start + index] = 1
                continue
            assert coding.value is not None
            numbers = values.to_numpy(dtype=float, na_value=np.nan)
            numbers = np.where(gone, np.nanmean(numbers), numbers)
            means, stds = np.array(coding.means), np.array(coding.stds)
            mode = _draw_modes(numbers, means, stds, np.array(coding.weights), rng)
            offset = np.clip((numbers - means[mode]) / (OFFSET_SCALE * stds[mode]), -0.99, 0.99)
            encoded[:, coding.value.start] = offset
            encoded[rows, coding.choice.start + mode] = 1
            if coding.missing is not None:
                encoded[rows, coding.missing.start + gone.astype(int)] = 1
        return encoded

    def decode(
        self, rows: np.ndarray, rng: np.random.Generator, sigmas: np.ndarray | None = None, temperature: float = 1.0
    ) -> pd.DataFrame:
        """Network output ``(N, width)`` (offsets after tanh, logits of every one-hot) -> the table.

        Each one-hot is sampled from the softmax of its logits divided by ``temperature`` (the Gumbel-max trick:
        the argmax of those logits plus Gumbel noise, drawn as -log of exponential draws; at 0, the argmax of the
        logits); an offset gets Gaussian
        noise of ``sigmas`` (TVAE's learned output scale) when given. The noise is drawn from ``rng`` in one
        fixed order, so a seed gives the same rows from PyTorch and from ONNX Runtime.
        """
        rows = np.asarray(rows, dtype=np.float64)
        noisy = rows / temperature - np.log(rng.standard_exponential(rows.shape)) if temperature > 0 else rows
        if sigmas is not None:  # offsets only: one column per numeric column
            offsets = [span.start for span in self.spans if span.activation == "tanh"]
            rows = rows.copy()
            rows[:, offsets] += rng.standard_normal((len(rows), len(offsets))) * np.asarray(sigmas)[offsets]
        values: dict[str, np.ndarray] = {}
        missing: dict[str, np.ndarray] = {}
        for column, coding in zip(self.schema_.columns, self.columns, strict=True):
            choice = _pick(noisy, coding.choice)
            if column.discrete:
                if column.missing > 0:
                    missing[column.name] = choice == len(column.categories)
                    choice = np.minimum(choice, len(column.categories) - 1)
                values[column.name] = choice
                continue
            assert coding.value is not None
            offset = np.clip(rows[:, coding.value.start], -1, 1)
            means, stds = np.array(coding.means), np.array(coding.stds)
            values[column.name] = offset * OFFSET_SCALE * stds[choice] + means[choice]
            if coding.missing is not None:
                missing[column.name] = _pick(noisy, coding.missing) == 1
        return build_frame(self.schema_, values, missing)


def fit_modes(frame: pd.DataFrame, schema: TableSchema, *, max_modes: int, seed: int) -> ModeTransform:
    """Fit a variational Gaussian mixture to each numeric column (scikit-learn's ``BayesianGaussianMixture``, as
    CTGAN does) and lay out the encoded row."""
    from sklearn.exceptions import ConvergenceWarning

    codings, start = [], 0
    for column in schema.columns:
        values = frame[column.name]
        if column.discrete:
            size = len(column.categories) + (1 if column.missing > 0 else 0)
            codings.append(ColumnCoding(name=column.name, choice=Span(start=start, size=size, activation="softmax")))
            start += size
            continue
        numbers = values.dropna().to_numpy(dtype=float).reshape(-1, 1)
        distinct = len(np.unique(numbers))
        if distinct < 2:  # one value: one mode, nothing to fit
            means, stds, weights = numbers[:1, 0], np.zeros(1), np.ones(1)
        else:
            with warnings.catch_warnings():  # 100 iterations that did not converge still give usable modes
                warnings.simplefilter("ignore", ConvergenceWarning)
                mixture = _mixture(min(max_modes, distinct), seed).fit(numbers)
            keep = mixture.weights_ > MIN_MODE_WEIGHT
            means = mixture.means_[:, 0][keep]
            stds = np.sqrt(mixture.covariances_.reshape(-1))[keep]
            weights = mixture.weights_[keep] / mixture.weights_[keep].sum()
        stds = np.maximum(stds, 1e-3 * max(float(numbers.std()), float(np.abs(numbers).max()) * 1e-3, 1e-6))
        value = Span(start=start, size=1, activation="tanh")
        choice = Span(start=start + 1, size=len(means), activation="softmax")
        start += 1 + len(means)
        gap = None
        if column.missing > 0:
            gap = Span(start=start, size=2, activation="softmax")
            start += 2
        codings.append(
            ColumnCoding(
                name=column.name,
                means=means.tolist(),
                stds=stds.tolist(),
                weights=weights.tolist(),
                value=value,
                choice=choice,
                missing=gap,
            )
        )
    return ModeTransform(schema=schema, columns=codings, width=start)


def _mixture(components: int, seed: int) -> Any:
    """CTGAN's variational Gaussian mixture: a Dirichlet-process prior that leaves unneeded components empty."""
    from sklearn.mixture import BayesianGaussianMixture

    return BayesianGaussianMixture(
        n_components=components,
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=0.001,
        max_iter=100,
        n_init=1,
        random_state=seed,
    )


def category_indices(column: Column, values: pd.Series) -> np.ndarray:
    """Each value's index among ``column``'s categories; missing values get the index after the last, and a
    value the training rows never had (held-out rows may) -1."""
    lookup = {category: index for index, category in enumerate(column.categories)}
    gone = len(column.categories) if column.missing > 0 else -1
    return np.array([gone if pd.isna(v) else lookup.get(_key(v), -1) for v in values], dtype=np.int64)


def _key(value: object) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _pick(noisy: np.ndarray, span: Span) -> np.ndarray:
    return np.argmax(noisy[:, span.start : span.start + span.size], axis=1)


def _draw_modes(
    numbers: np.ndarray, means: np.ndarray, stds: np.ndarray, weights: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A mode per value, drawn from the mixture's posterior over its modes."""
    z = (numbers[:, None] - means[None, :]) / stds[None, :]
    log_p = np.log(weights)[None, :] - np.log(stds)[None, :] - 0.5 * z**2
    posterior = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    posterior /= posterior.sum(axis=1, keepdims=True)
    cumulative = posterior.cumsum(axis=1)
    return np.minimum((cumulative < rng.random((len(numbers), 1))).sum(axis=1), len(means) - 1)
