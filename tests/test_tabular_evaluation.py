"""Tables in `genloom eval`: the figures of synthetic rows against real ones, and the report's picture."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genloom_tabular.evaluation import table_figures
from genloom_tabular.report import plot_report
from genloom_tabular.schema import TableSchema, infer_schema

HELD_OUT = 69
FIGURES = ("column_shapes", "pair_trends", "detection_logistic", "detection_boosting", "dcr_median", "exact_copies")


@pytest.fixture(scope="module")
def penguins() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Palmer penguins, shuffled, as (train, held-out) rows: 275 and 69."""
    path = importlib.metadata.distribution("palmerpenguins").locate_file("palmerpenguins/data/penguins.csv")
    frame = pd.read_csv(str(path)).sample(frac=1, random_state=0).reset_index(drop=True)
    return frame.iloc[HELD_OUT:].reset_index(drop=True), frame.iloc[:HELD_OUT].reset_index(drop=True)


@pytest.fixture(scope="module")
def schema(penguins: tuple[pd.DataFrame, pd.DataFrame]) -> TableSchema:
    return infer_schema(penguins[0], source="penguins", target="species")


def test_held_out_rows_score_like_real_rows(schema: TableSchema, penguins: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, held_out = penguins
    figures = table_figures(schema, train, held_out, held_out.copy(), seed=0)

    names = [*FIGURES, "efficacy_macro_f1"]
    assert set(figures) == {*names, *(f"real_{name}" for name in names), "dcr_ratio"}
    assert all(isinstance(value, float) for value in figures.values())
    assert figures["column_shapes"] > 0.8
    assert figures["detection_logistic"] > 0.7
    # The same rows in the synthetic rows' place give the same figures; efficacy fits on other rows (train-on-real).
    for name in FIGURES:
        assert figures[name] == figures[f"real_{name}"], name
    assert figures["real_efficacy_macro_f1"] > 0.9
    assert figures["dcr_ratio"] == 1.0
    assert figures["exact_copies"] == 0.0


def test_shuffled_rows_with_one_category_score_lower(
    schema: TableSchema, penguins: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, held_out = penguins
    generator = np.random.default_rng(0)
    broken = train.copy()
    for column in schema.columns:
        values = broken[column.name].to_numpy()
        broken[column.name] = column.categories[0] if column.discrete else generator.permutation(values)

    figures = table_figures(schema, train, held_out, broken, seed=0)

    assert figures["column_shapes"] < figures["real_column_shapes"] - 0.05
    assert figures["pair_trends"] < figures["real_pair_trends"] - 0.1
    assert figures["detection_logistic"] < figures["real_detection_logistic"] - 0.5
    assert figures["detection_boosting"] < figures["real_detection_boosting"] - 0.5
    # One species only: the model can but predict it, which is right for that species' share of the held-out rows.
    share = float((held_out["species"] == schema.column("species").categories[0]).mean())
    expected = 2 * share / (1 + share) / held_out["species"].nunique()
    assert figures["efficacy_macro_f1"] == pytest.approx(expected)
    assert figures["dcr_ratio"] > 1.0


def test_figures_by_hand_on_a_small_table() -> None:
    x = np.arange(20.0)
    train = pd.DataFrame({"x": x, "y": x, "c": ["a", "b"] * 10})
    synthetic = pd.DataFrame({"x": x + 100, "y": -x - 100, "c": ["a"] * 20})
    schema = infer_schema(train, source="small")

    figures = table_figures(schema, train, train.iloc[:10], synthetic, seed=0)

    # x and y lie beyond every training value (KS statistic 1); c's shares are 1/0 against 1/2 (distance 1/2).
    assert figures["column_shapes"] == pytest.approx(0.5 / 3)
    # r = 1 in training and -1 in the synthetic rows: as far apart as correlations go.
    assert figures["pair_trends"] == pytest.approx(0.0)
    assert figures["detection_logistic"] == pytest.approx(0.0)
    assert figures["real_exact_copies"] == 10.0
    assert figures["real_dcr_median"] == 0.0
    assert figures["dcr_ratio"] == float("inf")


def test_copies_of_training_rows_are_caught(schema: TableSchema, penguins: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, held_out = penguins
    copies = train.sample(n=100, random_state=1).reset_index(drop=True)
    # As a generator writes them: nullable integers, whole numbers as floats, None for a missing category.
    copies["body_mass_g"] = copies["body_mass_g"].astype("Int64")
    copies["year"] = copies["year"].astype(float)
    copies["sex"] = copies["sex"].astype(object).where(copies["sex"].notna(), None)

    figures = table_figures(schema, train, held_out, copies, seed=0)

    assert figures["exact_copies"] == len(copies)
    assert figures["real_exact_copies"] == 0.0
    assert figures["dcr_median"] == 0.0
    assert figures["dcr_ratio"] == 0.0


@pytest.mark.parametrize(
    ("target", "figure", "other"),
    [("body_mass_g", "efficacy_r2", "efficacy_macro_f1"), ("island", "efficacy_macro_f1", "efficacy_r2")],
)
def test_efficacy_follows_the_target(
    penguins: tuple[pd.DataFrame, pd.DataFrame], target: str, figure: str, other: str
) -> None:
    train, held_out = penguins
    schema = infer_schema(train, source="penguins", target=target)

    figures = table_figures(schema, train, held_out, train.sample(frac=1, random_state=2), seed=0)

    assert figures["real_" + figure] > 0.5  # penguins' body mass and island follow from the other columns
    assert figures[figure] == pytest.approx(figures["real_" + figure], abs=0.1)  # shuffled training rows
    assert other not in figures and "real_" + other not in figures


def test_no_target_no_efficacy(penguins: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, held_out = penguins
    schema = infer_schema(train, source="penguins")

    figures = table_figures(schema, train, held_out, held_out, seed=0)

    assert not [name for name in figures if "efficacy" in name]


def _assert_png(path: Path, min_width: int, min_height: int) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_width and image.height >= min_height
        assert image.width <= 4000 and image.height <= 4000


def test_report_pictures_penguins(
    schema: TableSchema, penguins: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    train, held_out = penguins
    path = tmp_path / "report" / "table.png"

    assert plot_report(schema, train, held_out, path) == path

    _assert_png(path, 800, 500)  # 8 column panels on two rows, then the two correlation matrices
    assert [item.name for item in path.parent.iterdir()] == ["table.png"]  # no temporary file left behind


@pytest.mark.parametrize(
    "values", [["red", "blue", None, "red", "green"], [1.5, 2.0, None, 3.0, 2.5]], ids=["categorical", "numeric"]
)
def test_report_pictures_one_column(values: list[object], tmp_path: Path) -> None:
    real = pd.DataFrame({"value": values})
    schema = infer_schema(real, source="one column")

    path = plot_report(schema, real, real.iloc[:2], tmp_path / "one.png")

    _assert_png(path, 300, 150)
