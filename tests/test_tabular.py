"""The tabular plugin: every CLI verb on tiny ctgan, tvae and copula models of the Palmer penguins, trained and
exported; conditions; the same rows from PyTorch and ONNX Runtime; the conformance kit; and bad tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import genloom
from genloom.testing import check_generator
from genloom_tabular import CTGAN, TVAE, GaussianCopula
from genloom_tabular.data import load_penguins
from genloom_tabular.schema import infer_schema
from tests.conftest import assert_one_line_error, cli_in_process, run_cli

TINY = {
    "ctgan": {"latent_dim": 8, "generator_dims": [32], "discriminator_dims": [32], "batch_size": 50, "pac": 5},
    "tvae": {"latent_dim": 8, "hidden_dims": [32], "batch_size": 50},
    "copula": {},
}
FORMS = ("trained", "export")
CASES = [(name, form) for name in TINY for form in FORMS]
PENGUIN_DTYPES = {
    "species": "object",
    "island": "object",
    "bill_length_mm": "float64",
    "bill_depth_mm": "float64",
    "flipper_length_mm": "Int64",  # whole numbers with missing values: pandas' nullable integers
    "body_mass_g": "Int64",
    "sex": "object",
    "year": "int64",
}


def ok(*args: str) -> str:
    result = cli_in_process(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def settings_of(name: str) -> list[str]:
    return [part for key, value in TINY[name].items() for part in ("--set", f"{key}={json.dumps(value)}")]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Each generator trained on the penguins with `genloom train` and exported with `genloom export`."""
    root = tmp_path_factory.mktemp("tables")
    made: dict[tuple[str, str], Path] = {}
    for name in TINY:
        trained, exported = root / name, root / f"{name}-onnx"
        printed = ok(
            "train", name, "--data", "penguins", "--out", str(trained), "--steps", "6", "--quiet", *settings_of(name)
        )
        assert f"model saved in {trained}" in printed
        assert f"exported '{name}' to {exported}" in ok("export", str(trained), "--out", str(exported))
        made[(name, "trained")], made[(name, "export")] = trained, exported
    return made


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return load_penguins(None).frame


@pytest.mark.parametrize(("name", "form"), CASES)
def test_generated_rows_keep_the_tables_columns_types_ranges_and_categories(
    models: dict[tuple[str, str], Path], penguins: pd.DataFrame, tmp_path: Path, name: str, form: str
) -> None:
    model = models[(name, form)]
    assert "wrote 400 rows to" in ok(
        "generate", str(model), "-n", "400", "--seed", "1", "--out", str(tmp_path / "a.csv")
    )
    ok("generate", str(model), "-n", "400", "--seed", "1", "--out", str(tmp_path / "a.parquet"))
    frame = genloom.load(model).generate(n=400, seed=1).frame
    text = str(penguins["species"].dtype)  # 'object', or 'str' from pandas 3 on: the training table's own
    expected = {column: text if dtype == "object" else dtype for column, dtype in PENGUIN_DTYPES.items()}
    assert {column: str(dtype) for column, dtype in frame.dtypes.items()} == expected
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), frame)  # Parquet keeps the dtypes
    from_csv = pd.read_csv(tmp_path / "a.csv")
    assert list(from_csv.columns) == list(PENGUIN_DTYPES) and len(from_csv) == 400
    for column in ("species", "island", "sex"):
        assert set(frame[column].dropna()) <= set(penguins[column].dropna()), column  # no invented category
    for column in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"):
        values = frame[column].dropna().astype(float)  # a 6-step model may make a column all missing
        assert values.empty or penguins[column].min() <= values.min() <= values.max() <= penguins[column].max()
    assert (frame["year"] % 1 == 0).all() and set(frame["year"]) <= {2007, 2008, 2009}
    assert ((frame["bill_length_mm"].dropna() * 10 + 1e-6) % 1 < 2e-6).all()  # one decimal, as the table has


@pytest.mark.parametrize(("name", "form"), CASES)
def test_the_same_seed_gives_the_same_rows_and_conditions_hold(
    models: dict[tuple[str, str], Path], name: str, form: str
) -> None:
    model = genloom.load(models[(name, form)])
    first, again, other = (model.generate(n=50, seed=seed).frame for seed in (4, 4, 5))
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)
    wanted = model.generate(n=60, seed=2, conditions={"species": "Adelie", "sex": "female"}).frame
    assert len(wanted) == 60 and (wanted["species"] == "Adelie").all() and (wanted["sex"] == "female").all()


@pytest.mark.parametrize("name", list(TINY))
def test_the_export_gives_the_trained_models_rows_up_to_counted_rounding_flips(
    models: dict[tuple[str, str], Path], name: str
) -> None:
    """PyTorch and ONNX Runtime differ by float32 noise in the network's output (the parity gate: at most 1e-4);
    decoding is the same numpy code. A value can only differ where that noise straddles a rounding boundary, by one
    unit of the column's rounding; such flips are counted and must be rare."""
    trained = genloom.load(models[(name, "trained")]).generate(n=2000, seed=9).frame
    exported = genloom.load(models[(name, "export")]).generate(n=2000, seed=9).frame
    assert list(trained.columns) == list(exported.columns)
    flips = 0
    for column in trained.columns:
        left, right = trained[column], exported[column]
        assert (left.isna() == right.isna()).all(), column
        if not pd.api.types.is_numeric_dtype(left):
            assert (left.dropna() == right.dropna()).all(), column
            continue
        gap = (left.dropna().astype(float) - right.dropna().astype(float)).abs()
        unit = 1.0 if column in ("flipper_length_mm", "body_mass_g", "year") else 0.1
        assert ((gap < 1e-9) | ((gap - unit).abs() < 1e-6)).all(), (column, gap.max())
        flips += int((gap > 1e-9).sum())
    assert flips <= 0.001 * trained.size, flips


@pytest.mark.parametrize(("name", "form"), CASES)
def test_info_eval_report_and_bench(models: dict[tuple[str, str], Path], tmp_path: Path, name: str, form: str) -> None:
    model = models[(name, form)]
    details = json.loads(ok("info", str(model), "--json"))
    assert details["modality"] == "table" and details["facts"]["schema"]["target"] == "species"
    report = json.loads(
        ok("eval", str(model), "--data", "penguins", "--seeds", "1", "--report", str(tmp_path / "r.png"), "--json")
    )
    figures = report["figures"]
    for figure in ("column_shapes", "pair_trends", "detection_logistic", "detection_boosting", "efficacy_macro_f1"):
        assert 0 <= figures[figure] <= 1 and 0 <= figures[f"real_{figure}"] <= 1, figure
    assert figures["exact_copies"] >= 0 and figures["dcr_ratio"] > 0
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "bench.json"
    ok("bench", str(model), "--repeats", "1", "--json", str(out))
    assert any(row["path"] == "onnxruntime fp32" for row in json.loads(out.read_text())["outputs"])


def test_eval_prints_each_figure_beside_the_real_rows_figure(models: dict[tuple[str, str], Path]) -> None:
    printed = ok("eval", str(models[("tvae", "export")]), "--data", "penguins", "--seeds", "2")
    rows = {line[:28].strip(): line[28:].split() for line in printed.splitlines()[2:]}
    assert printed.splitlines()[1].split() == ["model", "real"]
    for figure in ("column shapes", "pair trends", "detection logistic", "detection boosting", "efficacy macro f1"):
        model_mean, plus_minus, _, real_mean, _, _ = rows[figure]  # mean ± sd, twice
        assert plus_minus == "±" and 0 <= float(model_mean) <= 1 and 0 <= float(real_mean) <= 1, rows[figure]


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("generator_cls", [CTGAN, TVAE, GaussianCopula])
def test_each_tabular_generator_conforms(generator_cls: type, tmp_path: Path) -> None:
    check_generator(generator_cls, data="penguins", workdir=tmp_path, **{"steps": 2, **TINY[generator_cls.name]})


def test_column_types_are_inferred_and_overridden(penguins: pd.DataFrame) -> None:
    schema = infer_schema(penguins, source="penguins", target="species")
    types = {column.name: column.type for column in schema.columns}
    assert types == {
        "species": "categorical",
        "island": "categorical",
        "bill_length_mm": "continuous",
        "bill_depth_mm": "continuous",
        "flipper_length_mm": "integer",
        "body_mass_g": "integer",
        "sex": "categorical",
        "year": "integer",
    }
    assert schema.column("sex").missing == pytest.approx(11 / 344)
    forced = infer_schema(
        penguins, source="penguins", types={"year": "categorical"}, ranges={"body_mass_g": (3000, 5000)}
    )
    assert forced.column("year").categories == [2009, 2008, 2007]  # most frequent first
    assert (forced.column("body_mass_g").minimum, forced.column("body_mass_g").maximum) == (3000, 5000)


def test_a_configured_range_and_type_hold_in_the_generated_rows(tmp_path: Path) -> None:
    out = tmp_path / "model"
    ok(
        "train", "copula", "--data", "penguins", "--out", str(out), "--quiet",
        "--set", "column_ranges={\"body_mass_g\": [3500, 4500]}", "--set", "column_types={\"year\": \"categorical\"}",
    )  # fmt: skip
    frame = genloom.load(out).generate(n=500, seed=0).frame
    assert frame["body_mass_g"].dropna().between(3500, 4500).all()
    assert frame["year"].dtype == np.int64 and set(frame["year"]) <= {2007, 2008, 2009}  # the training dtype


def write_bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return f"csv:{path}"


BAD_TABLES = {
    "only-missing": (b"a,b\n1,\n2,\n3,\n", ("column 'b' holds only missing values", "drop the column")),
    "too-many-categories": (
        b"id,x\n" + b"".join(f"k{i},{i % 7}\n".encode() for i in range(10_000)),
        ("column 'id' has 8000 distinct values in its training rows", "more than the 1000"),
    ),
    "empty": (b"", ("is empty", "header row")),
    "not-utf8": (b"name,x\ncaf\xe9,1\nbar,2\n", ("is not UTF-8", "save it as UTF-8")),
    "semicolons": (b"name;x\na;1\nb;2\n", ("look separated by ';', not commas", "save it with commas")),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_a_bad_table_is_one_line_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    data, fragments = BAD_TABLES[case]
    source = write_bytes(tmp_path / "bad.csv", data)
    refused = run_cli("train", "copula", "--data", source, "--out", str(tmp_path / "model"))
    assert_one_line_error(refused, *fragments)
    assert not (tmp_path / "model").exists()


def test_a_target_column_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    refused = cli_in_process(
        "train", "copula", "--data", "penguins", "--out", str(tmp_path / "m"), "--set", "target=mass"
    )
    assert_one_line_error(refused, "target: no column 'mass' in 'penguins'", "species, island")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("conditions", "fragments"),
    [
        (["colour=red"], ("cannot condition on 'colour' (no such column)", "species, island, sex")),
        (["species=Emperor"], ("'species' has no category 'Emperor'", "Adelie, Gentoo, Chinstrap")),
        (["body_mass_g=4000"], ("'body_mass_g' is integer", "condition on a categorical or boolean column")),
        (["species=Adelie", "species=Gentoo"], ("'species' is already set to 'Adelie'", "one value")),
    ],
)
def test_a_bad_condition_is_one_line_and_nothing_is_written(
    models: dict[tuple[str, str], Path], tmp_path: Path, conditions: list[str], fragments: tuple[str, ...]
) -> None:
    for form in FORMS:
        out = tmp_path / f"{form}.csv"
        given = [part for condition in conditions for part in ("--condition", condition)]
        refused = cli_in_process("generate", str(models[("copula", form)]), *given, "--out", str(out))
        assert_one_line_error(refused, *fragments)
        assert not out.exists()


def test_an_out_file_of_another_format_is_refused_before_generating(
    models: dict[tuple[str, str], Path], tmp_path: Path
) -> None:
    refused = cli_in_process("generate", str(models[("copula", "trained")]), "--out", str(tmp_path / "rows.txt"))
    assert_one_line_error(refused, "a table is written as .csv or .parquet")
    assert not (tmp_path / "rows.txt").exists()


def test_a_table_result_writes_csv_and_parquet(models: dict[tuple[str, str], Path], tmp_path: Path) -> None:
    result = genloom.load(models[("ctgan", "export")]).generate(n=30, seed=0)
    assert result.provenance.seed == 0 and result.provenance.generator == "ctgan"
    pd.testing.assert_frame_equal(pd.read_parquet(result.to_parquet(tmp_path / "r.parquet")), result.frame)
    from_csv = pd.read_csv(result.to_csv(tmp_path / "r.csv"))
    assert from_csv.shape == (30, 8)
    np.testing.assert_allclose(from_csv["bill_length_mm"], result.frame["bill_length_mm"].astype(float))


def test_csv_and_parquet_sources_read_the_same_table(penguins: pd.DataFrame, tmp_path: Path) -> None:
    from genloom.plugins import get_registry

    penguins.to_csv(tmp_path / "p.csv", index=False)
    penguins.to_parquet(tmp_path / "p.parquet", index=False)
    from_csv = get_registry().open_data(f"csv:{tmp_path / 'p.csv'}")
    from_parquet = get_registry().open_data(f"parquet:{tmp_path / 'p.parquet'}")
    pd.testing.assert_frame_equal(from_csv.frame, penguins, check_dtype=False)
    pd.testing.assert_frame_equal(from_parquet.frame, penguins)
    assert from_csv.target is None  # a file suggests no target: set one with --set target=COLUMN
    out = tmp_path / "model"
    ok("train", "copula", "--data", f"parquet:{tmp_path / 'p.parquet'}", "--out", str(out), "--set", "target=island")
    assert genloom.load(out).manifest.facts["schema"]["target"] == "island"
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    refused = cli_in_process("train", "copula", "--data", f"parquet:{tmp_path / 'broken.parquet'}", "--out", str(out))
    assert_one_line_error(refused, "is not a readable Parquet file")


@pytest.mark.parametrize("name", list(TINY))
def test_schema_lists_each_tabular_generators_knobs(name: str) -> None:
    properties = json.loads(ok("schema", name))["properties"]
    assert {"target", "column_types", "column_ranges", "validation_fraction"} <= properties.keys()
    assert all(field.get("description") for field in properties.values())


MORE_BAD_TABLES = {
    "repeated-column": (b"a,a,b\n1,2,x\n3,4,y\n", (), ("column 'a' appears twice", "name columns uniquely")),
    "infinite": (b"x,y\n1,inf\n2,3\n4,5\n6,7\n8,9\n", (), ("column 'y' holds infinite values", "replace them")),
    "boolean-override": (
        b"c,y\na,1\nb,2\nc,3\na,4\nb,5\n",
        ("--set", 'column_types={"c": "boolean"}'),
        ("column 'c' holds values such as", "not only true and false; set it categorical"),
    ),
    "range-on-category": (
        b"c,y\na,1\nb,2\nc,3\na,4\nb,5\n",
        ("--set", 'column_ranges={"c": [0, 1]}'),
        ("column 'c' is categorical; a range applies to numeric columns only",),
    ),
}


@pytest.mark.parametrize("case", list(MORE_BAD_TABLES))
def test_more_bad_tables_are_one_line_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    data, settings, fragments = MORE_BAD_TABLES[case]
    source = write_bytes(tmp_path / "bad.csv", data)
    refused = cli_in_process("train", "copula", "--data", source, "--out", str(tmp_path / "model"), *settings)
    assert_one_line_error(refused, *fragments)
    assert not (tmp_path / "model").exists()


def test_a_column_of_one_value_and_held_out_categories_unseen_in_training_train_and_evaluate(tmp_path: Path) -> None:
    """Held-out rows may hold a category (or a missing value) the training rows lack; a column may hold one value."""
    from genloom_tabular.data import TableData

    rows = [f"{['a', 'b'][i % 2]},{i % 7},5" for i in range(60)]
    source = write_bytes(tmp_path / "t.csv", ("c,y,one\n" + "\n".join(rows) + "\n").encode())
    out = tmp_path / "model"
    ok("train", "tvae", "--data", source, "--out", str(out), "--steps", "3", "--quiet", *settings_of("tvae"))
    model = genloom.load(out)
    held_out = pd.DataFrame({"c": ["a", "zz", None, "b"], "y": [1, 2, 3, 4], "one": [5, 5, 5, 5]})
    assert np.isfinite(model.evaluate(TableData(held_out, "held-out"))["val_loss"])  # over the rows 'a' and 'b'
    frame = model.generate(n=50, seed=0).frame
    assert (frame["one"] == 5).all() and set(frame["c"]) <= {"a", "b"}


def test_a_report_that_is_not_a_png_is_refused_before_work(models: dict[tuple[str, str], Path], tmp_path: Path) -> None:
    refused = cli_in_process(
        "eval", str(models[("copula", "trained")]), "--data", "penguins", "--report", str(tmp_path / "r.txt")
    )
    assert_one_line_error(refused, "the report is a PNG picture; end the name in .png")
    assert not (tmp_path / "r.txt").exists()
