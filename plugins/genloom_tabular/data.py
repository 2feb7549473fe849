"""Tables as training data: :class:`TableData`, and the ``csv:PATH``, ``parquet:PATH``, ``penguins`` and
``diamonds`` sources. Nothing is downloaded: the two real tables ship inside installed packages."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from typing_extensions import Self

from genloom.data import DataSource
from genloom.errors import DataError

SPLIT_SEED = 20240601
"""Seed of the train/held-out split of rows: fixed, so that training and `genloom eval` hold out the same rows."""
DIAMONDS_ROWS = 5000
"""Rows of the ``diamonds`` source: a fixed sample of ggplot2's 53,940 diamonds, small enough to fit in minutes."""


@dataclass
class TableData:
    """A table as a pandas DataFrame, one example a row; ``target`` is the column the source suggests predicting."""

    frame: pd.DataFrame
    source: str
    target: str | None = None
    part: str = "all"
    modality: ClassVar[str] = "table"

    def __post_init__(self) -> None:
        if self.frame.shape[1] == 0 or len(self.frame) == 0:
            raise DataError(
                f"data source '{self.source}' holds no table (shape {self.frame.shape}); give a file with a header "
                "row and at least one data row"
            )
        names = [str(name) for name in self.frame.columns]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise DataError(f"data source '{self.source}': column '{repeated[0]}' appears twice; name columns uniquely")
        self.frame = self.frame.set_axis(names, axis=1).reset_index(drop=True)
        for name in names:
            values = self.frame[name]
            if pd.api.types.is_float_dtype(values) and np.isinf(values.to_numpy(dtype=float)).any():
                raise DataError(
                    f"data source '{self.source}': column '{name}' holds infinite values; replace them (or leave "
                    "them empty)"
                )

    def __len__(self) -> int:
        return len(self.frame)

    def facts(self) -> dict[str, Any]:
        return {"rows": len(self.frame), "columns": list(self.frame.columns)}

    def split(self, fraction: float) -> tuple[Self, Self | None]:
        """The same rows held out every time: a fixed shuffle, then ``round(fraction * rows)`` of them."""
        held_out = int(round(len(self) * fraction))
        if held_out == 0 or held_out >= len(self):
            return self, None
        order = np.random.default_rng(SPLIT_SEED).permutation(len(self))
        rows = self.frame.iloc[order]
        train = type(self)(rows.iloc[held_out:], self.source, self.target, "train")
        return train, type(self)(rows.iloc[:held_out], self.source, self.target, "validation")


def load_csv(argument: str | None) -> TableData:
    """``csv:PATH``: a UTF-8 CSV file with a header row."""
    path = _existing(argument, "csv")
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])  # pandas would rename a repeated name ('a', 'a.1')
        separator = next((mark for mark in (";", "\t", "|") if len(header) == 1 and mark in header[0]), None)
        if separator:
            raise DataError(
                f"data source 'csv:{path}' has one column, {header[0]!r}: its fields look separated by "
                f"{separator!r}, not commas; save it with commas between fields"
            )
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise DataError(f"data source 'csv:{path}': column '{repeated[0]}' appears twice; name columns uniquely")
        frame = pd.read_csv(path, encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"data source 'csv:{path}' is not UTF-8 text (byte {error.start} cannot be read); save it as UTF-8"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"data source 'csv:{path}' is empty; give a CSV with a header row and data rows") from None
    except pd.errors.ParserError as error:
        raise DataError(f"data source 'csv:{path}' is not a readable CSV ({str(error).strip()})") from None
    return TableData(frame, f"csv:{path}")


def load_parquet(argument: str | None) -> TableData:
    """``parquet:PATH``: a Parquet file."""
    import pyarrow

    path = _existing(argument, "parquet")
    try:
        frame = pd.read_parquet(path)
    except (pyarrow.ArrowException, OSError) as error:
        raise DataError(f"data source 'parquet:{path}' is not a readable Parquet file ({error})") from None
    return TableData(frame, f"parquet:{path}")


def load_penguins(argument: str | None) -> TableData:
    """The Palmer penguins (344 rows: species, island, four measurements, sex, year; some missing), from the
    ``palmerpenguins`` package."""
    frame = pd.read_csv(_packaged_file("palmerpenguins", "palmerpenguins/data/penguins.csv"))
    return TableData(frame, "penguins", target="species")


def load_diamonds(argument: str | None) -> TableData:
    """A fixed sample of 5,000 of ggplot2's diamonds (cut, color, clarity; carat, depth, table, price, x, y, z),
    from the ``plotnine`` package; price is the target."""
    frame = pd.read_csv(_packaged_file("plotnine", "plotnine/data/diamonds.csv"))
    rows = np.sort(np.random.default_rng(0).choice(len(frame), DIAMONDS_ROWS, replace=False))
    return TableData(frame.iloc[rows], "diamonds", target="price")


def _existing(argument: str | None, scheme: str) -> Path:
    if not argument:
        raise DataError(f"--data {scheme}:PATH needs the file's path after '{scheme}:'")
    path = Path(argument)
    if not path.is_file():
        raise DataError(f"data source '{scheme}:{argument}': no such file")
    return path


def _packaged_file(distribution: str, name: str) -> Path:
    """A data file inside an installed distribution, found without importing it."""
    try:
        path = Path(str(metadata.distribution(distribution).locate_file(name)))
    except metadata.PackageNotFoundError:
        raise DataError(
            f"this data source ships with the '{distribution}' package, which is not installed; "
            f"pip install 'genloom[train]' (or {distribution})"
        ) from None
    if not path.is_file():
        raise DataError(f"the '{distribution}' package has no {name}; reinstall it")
    return path


SOURCES = [
    DataSource("csv", load_csv, "a UTF-8 CSV file with a header row, one example a row", "PATH", "table"),
    DataSource("parquet", load_parquet, "a Parquet file, one example a row", "PATH", "table"),
    DataSource(
        "penguins",
        load_penguins,
        "the Palmer penguins (344 rows, 8 mixed-type columns with missing values; target species)",
        "",
        "table",
    ),
    DataSource(
        "diamonds",
        load_diamonds,
        f"a fixed {DIAMONDS_ROWS:,}-row sample of ggplot2's diamonds (10 columns, 3 categorical; target price)",
        "",
        "table",
    ),
]
