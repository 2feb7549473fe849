"""`genloom eval`'s picture of a table: each column's real and synthetic distributions side by side, then the real
and synthetic correlation matrices of the numeric columns. matplotlib is imported by :func:`plot_report` alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genloom.fileio import atomic_path
from genloom_tabular.schema import Column, TableSchema

PANELS_PER_ROW = 4
"""Column panels side by side."""
MAX_BARS = 10
"""Categories a discrete column's panel shows (the most frequent in training); the rest share an "other" bar."""
MAX_INTEGER_BINS = 40
"""An integer column spanning at most this many values gets one histogram bin per value."""
BINS = 20
"""Histogram bins of the other numeric columns."""
LABEL_CHARS = 12
"""Category labels are cut to this many characters."""
SOURCES = ("real", "synthetic")
COLOURS = {"real": "tab:blue", "synthetic": "tab:orange"}


def plot_report(schema: TableSchema, real: pd.DataFrame, synthetic: pd.DataFrame, path: Path) -> Path:
    """Write a PNG to ``path`` (atomically) and return it: one panel per column (numeric: density histograms of the
    real and synthetic values on shared bins; discrete: bars of each category's share, missing a bar of its own),
    then the Pearson correlation matrices of the real and synthetic numeric columns (two or more) on one -1..1
    colour scale."""
    from matplotlib.figure import Figure

    numeric = [column.name for column in schema.columns if not column.discrete]
    per_row = min(PANELS_PER_ROW, len(schema.columns))
    panel_rows = math.ceil(len(schema.columns) / per_row)
    correlations = len(numeric) >= 2
    heights = [2.6 * panel_rows] + ([3.0 + 0.12 * len(numeric)] if correlations else [])
    figure = Figure(figsize=(max(3.4 * per_row, 6.4), sum(heights) + 0.6), layout="constrained")
    parts = figure.subfigures(len(heights), 1, height_ratios=heights, squeeze=False)[:, 0]
    axes = parts[0].subplots(panel_rows, per_row, squeeze=False).ravel()
    for ax, column in zip(axes, schema.columns, strict=False):
        (_plot_shares if column.discrete else _plot_histogram)(ax, column, real[column.name], synthetic[column.name])
    for ax in axes[len(schema.columns) :]:
        ax.set_axis_off()
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=2, fontsize="small")
    if correlations:
        _plot_correlations(parts[1], numeric, real, synthetic)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=80)
    return path


def _plot_histogram(ax: Any, column: Column, real: pd.Series, synthetic: pd.Series) -> None:
    """Density histograms of the present values on shared bins (one per value for a narrow integer column)."""
    from matplotlib.ticker import MaxNLocator

    values = [
        pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan) for series in (real, synthetic)
    ]
    values = [numbers[~np.isnan(numbers)] for numbers in values]
    pooled = np.concatenate(values)
    if pooled.size:
        low, high = float(pooled.min()), float(pooled.max())
        narrow = column.type == "integer" and high - low < MAX_INTEGER_BINS
        bins = np.arange(low, high + 2) - 0.5 if narrow else np.histogram_bin_edges(pooled, bins=BINS)
        for numbers, label in zip(values, SOURCES, strict=True):
            ax.hist(numbers, bins=bins, density=True, alpha=0.5, color=COLOURS[label], label=label)
        if narrow:
            ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True))
    ax.set_title(column.name, fontsize="medium")
    ax.tick_params(labelsize="small")


def _plot_shares(ax: Any, column: Column, real: pd.Series, synthetic: pd.Series) -> None:
    """Side-by-side bars of each category's share of the rows; then "other" and "missing" where either has any."""
    shares = np.array([_shares(column, series) for series in (real, synthetic)])
    labels = [str(category)[:LABEL_CHARS] for category in column.categories[:MAX_BARS]] + ["other", "missing"]
    shown = np.flatnonzero((np.arange(len(labels)) < len(labels) - 2) | shares.any(axis=0))
    places = np.arange(len(shown))
    for offset, share, label in zip((-0.2, 0.2), shares, SOURCES, strict=True):
        ax.bar(places + offset, share[shown], width=0.4, color=COLOURS[label], label=label)
    ax.set_xticks(places, [labels[index] for index in shown], rotation=45, ha="right", fontsize="small")
    ax.set_title(column.name, fontsize="medium")
    ax.tick_params(axis="y", labelsize="small")


def _shares(column: Column, values: pd.Series) -> np.ndarray:
    """The share of rows holding each of the first :data:`MAX_BARS` categories, any other value, and missing."""
    missing = values.isna()
    counts = [float((values[~missing] == category).sum()) for category in column.categories[:MAX_BARS]]
    total = max(len(values), 1)
    other = float((~missing).sum()) - sum(counts)
    return np.array([*counts, other, float(missing.sum())]) / total


def _plot_correlations(part: Any, numeric: list[str], real: pd.DataFrame, synthetic: pd.DataFrame) -> None:
    """The two Pearson correlation matrices (pairwise-present rows) side by side, sharing a -1..1 colour bar."""
    axes = part.subplots(1, 2)
    for ax, frame, label in zip(axes, (real, synthetic), SOURCES, strict=True):
        numbers = pd.DataFrame({name: pd.to_numeric(frame[name], errors="coerce").astype(float) for name in numeric})
        image = ax.imshow(numbers.corr(method="pearson").to_numpy(), vmin=-1.0, vmax=1.0, cmap="coolwarm")
        ax.set_xticks(range(len(numeric)), numeric, rotation=90, fontsize="small")
        ax.set_yticks(range(len(numeric)), numeric, fontsize="small")
        ax.set_title(f"correlations: {label}", fontsize="medium")
    part.colorbar(image, ax=axes, shrink=0.8)
