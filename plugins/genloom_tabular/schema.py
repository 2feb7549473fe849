"""A table's schema: each column's type, categories, range and missing share, inferred from the training table
(or overridden in the config) and saved in the artifact. Imports no torch or scikit-learn: the runtime reads it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from genloom.config import StrictModel
from genloom.errors import ConfigError, DataError

ColumnType = Literal["continuous", "integer", "categorical", "boolean"]
COLUMN_TYPES: tuple[str, ...] = ("continuous", "integer", "categorical", "boolean")
MAX_CATEGORIES = 1000
"""The most distinct values a categorical column may have: more is an identifier or free text, not a category."""
MAX_DECIMALS = 6
"""Numeric values are rounded to the decimals the training column shows, up to this many."""
Category = str | bool | int | float
"""A category as the training table holds it (strings; numbers when a numeric column is set categorical)."""


class Column(StrictModel):
    """One column of the training table."""

    name: str
    type: ColumnType
    dtype: str = Field(description="The pandas dtype of the training column, for the generated one.")
    missing: float = Field(0.0, ge=0, le=1, description="Share of missing values in the training table.")
    categories: list[Category] = Field(
        default_factory=list, description="Categorical and boolean columns: the values seen, most frequent first."
    )
    frequencies: list[float] = Field(default_factory=list, description="Each category's share of the present values.")
    minimum: float | None = Field(None, description="Numeric columns: the smallest value generated.")
    maximum: float | None = Field(None, description="Numeric columns: the largest value generated.")
    decimals: int = Field(0, ge=0, description="Numeric columns: decimals generated values are rounded to.")

    @property
    def discrete(self) -> bool:
        """Whether its values are categories (categorical or boolean) rather than numbers."""
        return self.type in ("categorical", "boolean")


class TableSchema(StrictModel):
    """The columns of a training table, in order, and the target column of `genloom eval`'s efficacy figure."""

    columns: list[Column]
    target: str | None = None

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> Column:
        """The column called ``name``; a ConfigError listing the columns when there is none."""
        for column in self.columns:
            if column.name == name:
                return column
        raise ConfigError(f"no column '{name}' in the table; its columns are {', '.join(self.names)}")

    def conditions(self, conditions: Mapping[str, object] | None) -> dict[str, int]:
        """``{column: value}`` -> ``{column: index of the category}``, checked against the schema: a condition on an
        unknown or numeric column, or on a category the table never had, is a ConfigError that lists the choices."""
        resolved: dict[str, int] = {}
        discrete = [column.name for column in self.columns if column.discrete]
        for name, value in (conditions or {}).items():
            column = next((c for c in self.columns if c.name == name), None)
            if column is None or not column.discrete:
                what = "no such column" if column is None else f"'{name}' is {column.type}"
                raise ConfigError(
                    f"conditions: cannot condition on '{name}' ({what}); condition on a categorical or boolean "
                    f"column: {', '.join(discrete) or 'this table has none'}"
                )
            resolved[name] = category_index(column, value)
        return resolved


def category_index(column: Column, value: object) -> int:
    """The index of ``value`` among ``column``'s categories, matched exactly or by its text (``--condition
    sex=female``, ``flag=true``); a ConfigError listing the categories when it is none of them."""
    for index, category in enumerate(column.categories):
        if value == category and type(value) is type(category):
            return index
    text = str(value).strip().lower()
    for index, category in enumerate(column.categories):
        if str(category).lower() == text:
            return index
    choices = ", ".join(str(category) for category in column.categories)
    raise ConfigError(f"conditions: '{column.name}' has no category {value!r}; its categories are {choices}")


def infer_schema(
    frame: pd.DataFrame,
    *,
    source: str,
    types: Mapping[str, str] | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    target: str | None = None,
) -> TableSchema:
    """Each column's type from its values (booleans, whole numbers, other numbers, the rest categorical), unless
    ``types`` names it; categories, range (or ``ranges``'s) and missing share from the training table.

    A column with no value, a categorical column of more than :data:`MAX_CATEGORIES` values, an override or a
    target naming no column: one DataError or ConfigError that names the column and the fix.
    """
    types, ranges = dict(types or {}), dict(ranges or {})
    for option, names in (("column_types", types), ("column_ranges", ranges)):
        unknown = [name for name in names if name not in frame.columns]
        if unknown:
            columns = ", ".join(map(str, frame.columns))
            raise ConfigError(f"{option}: no column '{unknown[0]}' in '{source}'; its columns are {columns}")
    if target is not None and target not in frame.columns:
        raise ConfigError(
            f"target: no column '{target}' in '{source}'; its columns are {', '.join(map(str, frame.columns))}"
        )
    return TableSchema(
        columns=[
            _column(frame[name], str(name), source, types.get(str(name)), ranges.get(str(name)))
            for name in frame.columns
        ],
        target=target,
    )


def _column(
    values: pd.Series, name: str, source: str, forced: str | None, bounds: tuple[float, float] | None
) -> Column:
    present = values.dropna()
    if present.empty:
        raise DataError(
            f"data source '{source}': column '{name}' holds only missing values; drop the column or fill it"
        )
    kind = forced or _inferred_type(present)
    numeric = pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
    example = _plain(present.iloc[0])
    if kind in ("continuous", "integer") and not numeric:
        raise ConfigError(
            f"column_types: column '{name}' holds {present.dtype} values such as {example!r}, not numbers; "
            "set it categorical"
        )
    if kind == "integer" and not np.all(np.mod(present.to_numpy(dtype=float), 1) == 0):
        raise ConfigError(f"column_types: column '{name}' holds fractions such as {example!r}; set it continuous")
    if kind == "boolean" and not set(present.unique().tolist()) <= {True, False}:
        raise ConfigError(
            f"column_types: column '{name}' holds values such as {example!r}, not only true and false; "
            "set it categorical"
        )
    if bounds is not None and kind not in ("continuous", "integer"):
        raise ConfigError(f"column_ranges: column '{name}' is {kind}; a range applies to numeric columns only")
    base = {"name": name, "type": kind, "dtype": str(values.dtype), "missing": float(values.isna().mean())}
    if kind in ("categorical", "boolean"):
        counts = present.value_counts()
        if kind == "categorical" and len(counts) > MAX_CATEGORIES:
            raise DataError(
                f"data source '{source}': column '{name}' has {len(counts)} distinct values in its training rows, "
                f"more than the {MAX_CATEGORIES} a categorical column may have; drop it (an identifier or free text?)"
                + (" or set it continuous in column_types" if numeric else "")
            )
        categories = [_plain(value) for value in counts.index]
        return Column(**base, categories=categories, frequencies=(counts / counts.sum()).tolist())
    numbers = present.to_numpy(dtype=float)
    low, high = bounds if bounds is not None else (float(numbers.min()), float(numbers.max()))
    if not low <= high:
        raise ConfigError(f"column_ranges: the range of '{name}' must be [low, high] with low <= high, got {bounds}")
    decimals = 0 if kind == "integer" else _decimals(numbers)
    return Column(**base, minimum=float(low), maximum=float(high), decimals=decimals)


def _inferred_type(present: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(present) or all(isinstance(value, bool | np.bool_) for value in present):
        return "boolean"
    if pd.api.types.is_numeric_dtype(present):
        return "integer" if np.all(np.mod(present.to_numpy(dtype=float), 1) == 0) else "continuous"
    return "categorical"


def _decimals(numbers: np.ndarray) -> int:
    """The fewest decimals (up to :data:`MAX_DECIMALS`) that every value is written with."""
    for decimals in range(MAX_DECIMALS + 1):
        if np.allclose(
            np.round(numbers, decimals), numbers, rtol=0, atol=1e-9 * max(1.0, float(np.abs(numbers).max()))
        ):
            return decimals
    return MAX_DECIMALS


def _plain(value: Any) -> Category:
    """A category as a JSON value (numpy scalars become Python ones)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def build_frame(
    schema: TableSchema, values: Mapping[str, np.ndarray], missing: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """The generated table from each column's decoded values: numbers (clipped to the column's range and rounded to
    its decimals) or category indices (into ``categories``), with ``missing`` rows set missing; dtypes as in training
    (integer columns that may miss values as pandas' nullable ``Int64``)."""
    columns: dict[str, pd.Series] = {}
    for column in schema.columns:
        raw = values[column.name]
        gone = missing.get(column.name)
        if column.discrete:
            series = pd.Series(np.asarray(column.categories, dtype=object)[raw], dtype=object)
            if column.type == "boolean" and gone is None:
                series = series.astype(bool)
            elif column.dtype in ("str", "string"):  # pandas' string dtypes (read_csv's default from pandas 3)
                series = series.astype(column.dtype)
            elif column.dtype.startswith(("int", "uint", "float")):  # a numeric column set categorical
                whole = column.dtype.startswith(("int", "uint"))
                series = series.astype("Int64" if whole and gone is not None else column.dtype)
        else:
            assert column.minimum is not None and column.maximum is not None
            scale = 10.0**column.decimals  # the range's ends rounded inwards, so rounding cannot leave it
            low, high = np.ceil(column.minimum * scale) / scale, np.floor(column.maximum * scale) / scale
            numbers = np.clip(np.round(raw.astype(np.float64), column.decimals), low, max(low, high))
            if column.type == "integer":
                series = pd.Series(numbers.astype(np.int64))
                if gone is not None:
                    series = series.astype("Int64")
                elif column.dtype.startswith(("int", "uint")):
                    series = series.astype(column.dtype)
            else:
                series = pd.Series(numbers)
        if gone is not None:
            series = series.mask(gone)
        columns[column.name] = series
    return pd.DataFrame(columns)
