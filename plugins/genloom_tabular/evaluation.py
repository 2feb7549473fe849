"""`genloom eval` on tables: how close generated rows are to the real ones (column shapes, pair trends, how hard a
classifier finds it to tell them apart, machine-learning efficacy) and how close to copies they are (distance to
the closest training row, exact copies).

Every figure is also computed with the real held-out rows in the generated rows' place, under the name prefixed
``real_``: the score of a model as good as the data itself. scikit-learn and scipy are imported by the functions
that use them, so importing this module costs neither.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

from genloom.errors import DataError
from genloom_tabular.schema import Column, TableSchema

FOLDS = 3
"""Folds of the detection figures' cross-validation."""
REAL = "real_"
"""Prefix of the figures computed with the real held-out rows in the generated rows' place."""


@dataclass(frozen=True)
class _Rows:
    """A table's columns as the figures read them: numeric columns as floats (NaN where missing), and every
    column as the comparable text of each value (None where missing; numbers as ``repr(float)``, so 3 is 3.0)."""

    numbers: dict[str, np.ndarray]
    keys: dict[str, np.ndarray]

    @property
    def count(self) -> int:
        return len(next(iter(self.keys.values())))

    def present(self, name: str) -> _Rows:
        """The rows whose column ``name`` is not missing."""
        keep = np.array([key is not None for key in self.keys[name]], dtype=bool)
        return _Rows(
            {column: values[keep] for column, values in self.numbers.items()},
            {column: values[keep] for column, values in self.keys.items()},
        )


def table_figures(
    schema: TableSchema, train: pd.DataFrame, held_out: pd.DataFrame, synthetic: pd.DataFrame, *, seed: int
) -> dict[str, float]:
    """The figures of ``synthetic`` rows against the real ``train`` rows (and ``held_out`` rows for efficacy), each
    beside its ``real_`` twin computed with ``held_out`` in ``synthetic``'s place.

    ``column_shapes``: mean over columns of 1 - KS statistic (numeric) or 1 - total variation distance (discrete).
    ``pair_trends`` (2 numeric columns or more): mean over numeric pairs of 1 - |difference of Pearson r| / 2.
    ``detection_logistic``, ``detection_boosting``: 1 - (2 * clipped ROC AUC - 1) of a classifier telling the
    rows from ``train``'s, cross-validated (1: indistinguishable). ``efficacy_macro_f1`` or ``efficacy_r2`` (when
    the schema has a target): a gradient-boosting model fit on the rows (``real_``: on ``train``), tested on
    ``held_out``. ``dcr_median``: median distance of a row to its closest ``train`` row; ``dcr_ratio`` divides it
    by the held-out rows' (well below 1: copies). ``exact_copies``: rows equal to a ``train`` row in every column.
    """
    train_rows, held_out_rows, synthetic_rows = (
        _rows(schema, frame, part)
        for frame, part in ((train, "train"), (held_out, "held-out"), (synthetic, "synthetic"))
    )
    generated = _figures(schema, train_rows, held_out_rows, synthetic_rows, synthetic_rows, seed)
    real = _figures(schema, train_rows, held_out_rows, held_out_rows, train_rows, seed)
    figures: dict[str, float] = {}
    for name, value in generated.items():
        figures[name] = value
        figures[REAL + name] = real[name]
    figures["dcr_ratio"] = _ratio(figures["dcr_median"], figures[REAL + "dcr_median"])
    return figures


def _figures(
    schema: TableSchema, train: _Rows, held_out: _Rows, compared: _Rows, learner: _Rows, seed: int
) -> dict[str, float]:
    """The figures of ``compared`` against ``train``; efficacy fits on ``learner`` and tests on ``held_out``."""
    numeric = [column.name for column in schema.columns if not column.discrete]
    figures = {"column_shapes": _column_shapes(schema, train, compared)}
    if len(numeric) >= 2:
        figures["pair_trends"] = _pair_trends(numeric, train, compared)
    figures.update(_detection_figures(schema, train, compared, seed))
    if schema.target is not None and len(schema.columns) > 1:
        figures.update(_efficacy(schema, schema.column(schema.target), learner, held_out, train, seed))
    figures["dcr_median"] = float(np.median(_closest_distances(schema, train, compared)))
    figures["exact_copies"] = float(_exact_copies(schema, train, compared))
    return figures


def _rows(schema: TableSchema, frame: pd.DataFrame, part: str) -> _Rows:
    """``frame``'s columns read as :class:`_Rows`; a DataError when it lacks one of the schema's columns or holds fewer
    rows than the detection figures' folds."""
    lacking = [name for name in schema.names if name not in frame.columns]
    if lacking:
        raise DataError(
            f"the {part} rows lack the column(s) {', '.join(lacking)}; give them every column of the training table"
        )
    if len(frame) < FOLDS:
        raise DataError(f"the {part} rows number {len(frame)}; give {FOLDS} rows or more to compare tables")
    numbers = {
        column.name: pd.to_numeric(frame[column.name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        for column in schema.columns
        if not column.discrete
    }
    keys = {
        column.name: _number_keys(numbers[column.name]) if not column.discrete else _value_keys(frame[column.name])
        for column in schema.columns
    }
    return _Rows(numbers, keys)


def _number_keys(values: np.ndarray) -> np.ndarray:
    return np.array([None if np.isnan(value) else repr(float(value)) for value in values], dtype=object)


def _value_keys(values: pd.Series) -> np.ndarray:
    return np.array([_key(value) for value in values], dtype=object)


def _key(value: Any) -> str | None:
    """A value as text that equal values share whatever their type (3, 3.0 and numpy's 3 alike); None if missing."""
    if pd.isna(value):
        return None
    if isinstance(value, bool | np.bool_):
        return repr(bool(value))
    if isinstance(value, Real):
        return repr(float(value))
    return str(value)


def _column_shapes(schema: TableSchema, train: _Rows, compared: _Rows) -> float:
    """Mean over columns of 1 - KS statistic (numeric) or 1 - total variation distance (discrete; missing is a
    category of its own)."""
    from scipy.stats import ks_2samp

    scores = []
    for column in schema.columns:
        if column.discrete:
            scores.append(1.0 - _total_variation(train.keys[column.name], compared.keys[column.name]))
            continue
        expected, observed = (
            values[~np.isnan(values)] for values in (train.numbers[column.name], compared.numbers[column.name])
        )
        scores.append(1.0 - float(ks_2samp(expected, observed).statistic) if len(expected) and len(observed) else 0.0)
    return float(np.mean(scores))


def _total_variation(expected: np.ndarray, observed: np.ndarray) -> float:
    """Half the L1 distance between the two columns' value shares (None, missing, counted as a value)."""
    counts = [Counter(values.tolist()) for values in (expected, observed)]
    return 0.5 * sum(
        abs(counts[0][key] / len(expected) - counts[1][key] / len(observed))
        for key in counts[0].keys() | counts[1].keys()
    )


def _pair_trends(numeric: list[str], train: _Rows, compared: _Rows) -> float:
    """Mean over pairs of numeric columns of 1 - |r(train) - r(compared)| / 2."""
    expected, observed = (_correlations(numeric, rows) for rows in (train, compared))
    upper = np.triu_indices(len(numeric), k=1)
    return float(np.mean(1.0 - np.abs(expected[upper] - observed[upper]) / 2.0))


def _correlations(numeric: list[str], rows: _Rows) -> np.ndarray:
    """Pearson correlations of the numeric columns on pairwise-present rows; 0 (no trend) where undefined, as for a
    constant column."""
    frame = pd.DataFrame({name: rows.numbers[name] for name in numeric})
    return np.nan_to_num(frame.corr(method="pearson").to_numpy(), nan=0.0)


def _detection_figures(schema: TableSchema, train: _Rows, compared: _Rows, seed: int) -> dict[str, float]:
    """How hard a logistic regression and gradient boosting find it to tell ``compared`` rows from ``train``'s."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    features = np.vstack(_features(schema.columns, train, [train, compared]))
    labels = np.concatenate([np.zeros(train.count, dtype=int), np.ones(compared.count, dtype=int)])
    return {
        "detection_logistic": _detection(LogisticRegression(max_iter=1000), features, labels, seed),
        "detection_boosting": _detection(GradientBoostingClassifier(random_state=seed), features, labels, seed),
    }


def _detection(model: Any, features: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """SDMetrics' detection score: 1 - mean over stratified folds of (2 * max(ROC AUC, 0.5) - 1)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    advantages = []
    for fit, test in folds.split(features, labels):
        model.fit(features[fit], labels[fit])
        auc = roc_auc_score(labels[test], model.predict_proba(features[test])[:, 1])
        advantages.append(2.0 * max(float(auc), 0.5) - 1.0)
    return 1.0 - float(np.mean(advantages))


def _features(columns: list[Column], train: _Rows, tables: list[_Rows]) -> list[np.ndarray]:
    """Each of ``tables`` as classifier features: numeric columns standardised by ``train``'s mean and std (missing
    is 0, plus a missing indicator where the schema or any table has a missing value), discrete ones one-hot."""
    blocks: list[list[np.ndarray]] = [[] for _ in tables]
    for column in columns:
        if column.discrete:
            for block, rows in zip(blocks, tables, strict=True):
                block.append(_one_hot(column, rows.keys[column.name]))
            continue
        known = train.numbers[column.name]
        mean, std = float(np.nanmean(known)), float(np.nanstd(known))
        indicator = column.missing > 0 or any(np.isnan(rows.numbers[column.name]).any() for rows in tables)
        for block, rows in zip(blocks, tables, strict=True):
            values = rows.numbers[column.name]
            missing = np.isnan(values)
            block.append(np.where(missing, 0.0, (values - mean) / (std or 1.0))[:, None])
            if indicator:
                block.append(missing[:, None].astype(float))
    return [np.hstack(block) for block in blocks]


def _one_hot(column: Column, keys: np.ndarray) -> np.ndarray:
    """One slot per category of the schema, then one for missing and one for a value the schema does not know."""
    slots = {_key(category): index for index, category in enumerate(column.categories)}
    missing, unknown = len(slots), len(slots) + 1
    codes = np.array([missing if key is None else slots.get(key, unknown) for key in keys], dtype=int)
    encoded = np.zeros((len(keys), len(slots) + 2))
    encoded[np.arange(len(keys)), codes] = 1.0
    return encoded


def _efficacy(
    schema: TableSchema, target: Column, learner: _Rows, held_out: _Rows, train: _Rows, seed: int
) -> dict[str, float]:
    """A gradient-boosting model of ``target`` fit on ``learner``'s rows, scored on ``held_out``'s (macro F1 for a
    discrete target, R^2 for a numeric one); rows missing the target are left out of both."""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.metrics import f1_score, r2_score

    learner, held_out = learner.present(target.name), held_out.present(target.name)
    columns = [column for column in schema.columns if column.name != target.name]
    fit, test = _features(columns, train, [learner, held_out])
    if not target.discrete:
        model = GradientBoostingRegressor(random_state=seed).fit(fit, learner.numbers[target.name])
        return {"efficacy_r2": float(r2_score(held_out.numbers[target.name], model.predict(test)))}
    labels, truth = learner.keys[target.name].astype(str), held_out.keys[target.name].astype(str)
    if len(set(labels)) == 1:  # one class: nothing to fit, the model can only predict it
        predicted = np.full(len(truth), labels[0], dtype=object)
    else:
        predicted = GradientBoostingClassifier(random_state=seed).fit(fit, labels).predict(test)
    return {"efficacy_macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0))}


def _closest_distances(schema: TableSchema, train: _Rows, compared: _Rows) -> np.ndarray:
    """Each ``compared`` row's L1 distance to its closest ``train`` row, on :func:`_proximity_coding`."""
    from sklearn.neighbors import NearestNeighbors

    reference, rows = (_proximity_coding(schema, train, table) for table in (train, compared))
    distances, _ = NearestNeighbors(n_neighbors=1, metric="manhattan").fit(reference).kneighbors(rows)
    return np.asarray(distances[:, 0])


def _proximity_coding(schema: TableSchema, train: _Rows, rows: _Rows) -> np.ndarray:
    """Rows for the distance to the closest record: numeric columns divided by ``train``'s range (0 when constant)
    beside a missing indicator (missing against present costs 1 or more), discrete columns one-hot halved (a
    mismatch costs 1)."""
    blocks = []
    for column in schema.columns:
        if column.discrete:
            blocks.append(0.5 * _one_hot(column, rows.keys[column.name]))
            continue
        known, values = train.numbers[column.name], rows.numbers[column.name]
        low, span = float(np.nanmin(known)), float(np.nanmax(known) - np.nanmin(known))
        missing = np.isnan(values)
        scaled = np.where(missing, 0.0, (values - low) / span) if span > 0 else np.zeros(len(values))
        blocks.extend([scaled[:, None], missing[:, None].astype(float)])
    return np.hstack(blocks)


def _exact_copies(schema: TableSchema, train: _Rows, compared: _Rows) -> int:
    """How many ``compared`` rows equal a ``train`` row in every column (missing equal to missing)."""
    seen = set(zip(*(train.keys[name] for name in schema.names), strict=True))
    return sum(row in seen for row in zip(*(compared.keys[name] for name in schema.names), strict=True))


def _ratio(generated: float, real: float) -> float:
    """``generated / real``; 1 when both are 0, infinite when only ``real`` is."""
    if real > 0:
        return generated / real
    return 1.0 if generated == 0 else float("inf")
