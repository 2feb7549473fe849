"""The ``table`` kind: rows of a mixed-type table, returned as a pandas DataFrame and written as CSV or Parquet.
Imports no torch: the runtime install makes and writes tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from genloom.config import StrictModel
from genloom.errors import ConfigError, DataError
from genloom.fileio import atomic_path
from genloom.kinds import DataKind
from genloom.results import Provenance
from genloom_tabular.data import TableData
from genloom_tabular.schema import Category, TableSchema

DEFAULT_OUT = "generated.csv"
SUFFIXES = (".csv", ".parquet")
MAX_ROWS = 10_000_000


class TableSampling(StrictModel):
    """How many rows, from which seed, under which conditions."""

    n: int = Field(100, ge=1, le=MAX_ROWS, description="Number of rows.")
    seed: int | None = Field(None, ge=0, description="Seed of every random draw; the same seed gives the same rows.")
    conditions: dict[str, Category] | None = Field(
        None,
        description="Only rows with these values of categorical or boolean columns, e.g. {'species': 'Adelie'} "
        "(--condition species=Adelie on the CLI).",
    )

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


@dataclass(frozen=True)
class TableResult:
    """Generated rows: ``frame`` has the training table's columns and dtypes (integer columns with missing values
    as pandas' nullable ``Int64``)."""

    frame: pd.DataFrame
    provenance: Provenance

    def to_csv(self, path: str | Path) -> Path:
        """Write the rows as a UTF-8 CSV file with a header row (atomically); return the path."""
        target = Path(path)
        with atomic_path(target) as tmp:
            self.frame.to_csv(tmp, index=False)
        return target

    def to_parquet(self, path: str | Path) -> Path:
        """Write the rows as a Parquet file (atomically); return the path."""
        target = Path(path)
        with atomic_path(target) as tmp:
            self.frame.to_parquet(tmp, index=False)
        return target


def make_result(frame: pd.DataFrame, provenance: Provenance) -> TableResult:
    return TableResult(frame, provenance)


def write(result: TableResult, out: Path | None) -> str:
    """CSV or Parquet by ``out``'s suffix (checked before generating)."""
    target = Path(out or DEFAULT_OUT)
    if target.suffix.lower() == ".parquet":
        result.to_parquet(target)
    else:
        result.to_csv(target)
    return f"wrote {len(result.frame)} rows to {target}"


def compare(first: TableResult, second: TableResult) -> float:
    """The largest difference of a numeric value; infinite when columns, missing values or categories differ."""
    a, b = first.frame, second.frame
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return float("inf")
    largest = 0.0
    for name in a.columns:
        left, right = a[name], b[name]
        if not np.array_equal(left.isna().to_numpy(), right.isna().to_numpy()):
            return float("inf")
        present = left.notna().to_numpy()
        if pd.api.types.is_numeric_dtype(left) and not pd.api.types.is_bool_dtype(left):
            gap = np.abs(left.to_numpy(dtype=float)[present] - right.to_numpy(dtype=float)[present])
            largest = max(largest, float(gap.max(initial=0.0)))
        elif not (left[present].to_numpy() == right[present].to_numpy()).all():
            return float("inf")
    return largest


def to_json(result: TableResult) -> dict[str, Any]:
    """``{"columns": [...], "rows": [[...], ...]}``, missing values as null."""
    frame = result.frame.astype(object).where(result.frame.notna(), None)
    return {"columns": list(frame.columns), "rows": [[_plain(value) for value in row] for row in frame.to_numpy()]}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def check_out(out: Path) -> None:
    """``--out`` must end in .csv or .parquet."""
    if out.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"--out {out}: a table is written as .csv or .parquet; end the name in one of them")


def evaluate(
    model: Any, data: TableData, train: TableData, validation: TableData | None, *, samples: int, seed: int
) -> dict[str, Any]:
    """Fidelity, detection, efficacy and privacy of as many generated rows as the training split has (at most
    ``samples``), each beside the held-out real rows' own figure against the training rows."""
    from genloom.install import require_training_install
    from genloom_tabular.evaluation import table_figures

    require_training_install("evaluating tables (scikit-learn classifiers)")
    if validation is None:
        raise DataError(
            f"'{data.source}' has too few rows to hold any out; evaluate on a table with more rows (or train with a "
            "larger validation_fraction)"
        )
    synthetic = model.generate(n=min(samples, len(train)), seed=seed).frame
    return {"figures": table_figures(_schema(model), train.frame, validation.frame, synthetic, seed=seed)}


def report(
    model: Any, data: TableData, train: TableData, validation: TableData | None, out: Path, *, seed: int
) -> None:
    """Each column of as many generated rows as the training split has, beside the training rows, and the two
    correlation matrices, in a PNG at ``out``."""
    from genloom_tabular.report import plot_report

    plot_report(_schema(model), train.frame, model.generate(n=len(train), seed=seed).frame, out)


def _schema(model: Any) -> TableSchema:
    """The schema a loaded model (trained or exported) keeps in its manifest's facts."""
    return TableSchema.model_validate(model.manifest.facts["schema"])


TABLE: DataKind[TableSampling, pd.DataFrame, TableResult] = DataKind(
    name="table",
    dataset=TableData,
    sampling=TableSampling,
    result=TableResult,
    make_result=make_result,
    write=write,
    compare=compare,
    to_json=to_json,
    check_settings={"n": 5, "seed": 7},
    description="rows of a mixed-type table (a pandas DataFrame); a CSV or Parquet file",
    default_out=DEFAULT_OUT,
    sample_suffix=".csv",
    training_samples={"n": 20},
    count_field="n",
    bench_batches=(1, 64, 4096),
    evaluate=evaluate,
    report=report,
    check_out=check_out,
)
