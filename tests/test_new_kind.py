"""The plugin guide's second example, a plugin of a new kind of data ("series"), installed as a third party's
distribution: every command works on it through the hooks alone, with no change to the core."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import genloom
from genloom.plugins import get_registry
from genloom.testing import check_generator
from tests.conftest import assert_one_line_error, install_fake_distribution, run_cli
from tests.test_plugin_guide import SERIES, example_files, install_example

LENGTH = 32
"""Steps of each series of the example's ``sines`` source."""
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None; from genloom.cli import main; main(sys.argv[1:])"
"""``python -c`` program: the genloom CLI in a process where any import of torch fails."""
BUILT_IN_PLUGINS = ("genloom_gan", "genloom_vae", "genloom_text", "genloom_tabular", "genloom_audio")

# The CLI with no entry-point plugin at all: the example and the ONNX exporter registered in process. It runs the
# commands in argv[1] (JSON) one after the other and prints, last, their exit codes and the built-in plugins' modules
# that anything imported.
ONLY_THE_NEW_KIND = f"""
import json, sys
import genloom.plugins, genloom_onnx, genloom_series
from genloom.cli import main

genloom.plugins.register(genloom_series)
genloom.plugins.register(genloom_onnx)
exits = []
for argv in json.loads(sys.argv[1]):
    try:
        main(argv)
    except SystemExit as exit_:
        exits.append(exit_.code)
imported = sorted(name for name in sys.modules if name.split(".")[0] in {BUILT_IN_PLUGINS!r})
print(json.dumps({{"exits": exits, "built_in_modules": imported}}))
"""

# An export description that names the noise input 'latents', which the series-from-noise driver does not feed.
UNFED_VARIANT = """
import dataclasses

import genloom
from genloom_series.generator import SeriesMMD


class UnfedSeries(SeriesMMD):
    name = "series-unfed"

    def export_spec(self):
        spec = super().export_spec()
        graph = dataclasses.replace(spec.graphs[0], input_names=["latents"], dynamic_axes={"latents": {0: "batch"}})
        return dataclasses.replace(spec, graphs=[graph])


@genloom.hookimpl
def register_generators(register):
    register(UnfedSeries)
"""

# A kind whose -n field is not one of its sampling settings.
MISCOUNTED_KIND = """
import genloom
from genloom.config import StrictModel


class RowSampling(StrictModel):
    n: int = 1


@genloom.hookimpl
def register_data_kinds(register):
    register(genloom.DataKind(name="rows", dataset=list, sampling=RowSampling, result=list, make_result=list,
                              write=print, compare=max, to_json=list, check_settings={}, count_field="rows"))
"""


@pytest.fixture(scope="module")
def series_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide's genloom-series files, pip-installed into a folder of their own."""
    return install_example(example_files(SERIES), tmp_path_factory.mktemp("genloom-series"))


@pytest.fixture
def series_in_process(series_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The installed example importable in this process (and its subprocesses), found as an entry point."""
    monkeypatch.syspath_prepend(str(series_site))
    monkeypatch.setenv("PYTHONPATH", str(series_site))
    genloom.plugins.reset()
    yield series_site
    for name in [m for m in sys.modules if m.split(".")[0] == "genloom_series"]:
        del sys.modules[name]
    genloom.plugins.reset()


def read_series(path: Path) -> np.ndarray:
    """A CSV the series kind wrote: its header names the steps t0..t31; one series a row."""
    header, *rows = path.read_text().splitlines()
    assert header == ",".join(f"t{step}" for step in range(LENGTH))
    return np.array([[float(value) for value in row.split(",")] for row in rows], dtype=np.float32)


def without_torch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``genloom ARGS`` in a fresh process where torch cannot be imported."""
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_plugin_of_a_new_kind_trains_generates_exports_and_runs_its_export_without_torch(
    series_site: Path, tmp_path: Path
) -> None:
    env = {"PYTHONPATH": str(series_site)}
    listed = run_cli("plugins", env=env)
    plugin = [line for line in listed.stdout.splitlines() if line.split()[:4] == ["series", "0.1.0", "entry", "point"]]
    assert len(plugin) == 1, listed.stdout
    for provided in (
        "data kinds: series",
        "generators: series-mmd",
        "data sources: sines",
        "runtime drivers: series-from-noise",
    ):
        assert provided in plugin[0], plugin[0]
    kinds = listed.stdout.split("Kinds of data:")[1].split("Generators:")[0]
    assert "series           float32 series of T values; a CSV file, one series a row" in kinds, listed.stdout

    model = tmp_path / "model"
    trained = run_cli("train", "series-mmd", "--data", "sines", "--out", str(model), "--steps", "30", env=env)
    assert trained.returncode == 0, trained.stderr
    assert read_series(model / "samples" / "samples-000030.csv").shape == (8, LENGTH)  # the kind's training samples
    for name in ("a", "b"):
        made = run_cli(
            "generate",
            str(model),
            "-n",
            "5",
            "--seed",
            "0",
            "--out",
            str(tmp_path / f"{name}.csv"),
            "--npy",
            str(tmp_path / f"{name}.npy"),
            env=env,
        )
        assert made.returncode == 0, made.stderr
        assert f"wrote 5 series to {tmp_path / name}.csv" in made.stdout
    torch_series = read_series(tmp_path / "a.csv")
    assert torch_series.shape == (5, LENGTH) and np.isfinite(torch_series).all()
    np.testing.assert_array_equal(torch_series, np.load(tmp_path / "a.npy"))  # the CSV holds the float32 values exactly
    np.testing.assert_array_equal(torch_series, read_series(tmp_path / "b.csv"))
    info = run_cli("info", str(model), env=env)
    for field in ("generator        series-mmd", "plugin           series", "modality         series", '"length": 32'):
        assert field in info.stdout, info.stdout

    export = tmp_path / "export"
    exported = run_cli("export", str(model), "--out", str(export), env=env)
    assert exported.returncode == 0, exported.stderr
    assert "driver series-from-noise" in exported.stdout
    for name, seed in (("onnx", "0"), ("other-seed", "1")):
        made = without_torch(
            "generate", str(export), "-n", "5", "--seed", seed, "--out", str(tmp_path / f"{name}.csv"), env=env
        )
        assert made.returncode == 0, made.stderr
    assert np.abs(read_series(tmp_path / "onnx.csv") - torch_series).max() <= 1e-4
    assert np.abs(read_series(tmp_path / "other-seed.csv") - torch_series).max() > 1e-2

    evaluated = run_cli("eval", str(model), "--data", "sines", "-n", "64", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "held-out val_mmd" in evaluated.stdout, evaluated.stdout
    header = [line for line in evaluated.stdout.splitlines() if line.split() == ["model", "real"]]
    rows = {line.split()[0]: line.split()[1:] for line in evaluated.stdout.splitlines() if "gap" in line}
    assert header and set(rows) == {"mean", "std"}, evaluated.stdout  # each gap beside its real_ twin, in one row
    assert all(words[0] == "gap" and len(words) == 7 for words in rows.values()), rows  # gap, mean ± sd twice
    evaluated = without_torch("eval", str(export), "--data", "sines", "-n", "64", env=env)
    assert evaluated.returncode == 0 and "mean gap" in evaluated.stdout, evaluated.stderr
    benched = run_cli("bench", str(export), "--repeats", "1", env=env)  # bench is of the training install (onnx, torch)
    assert benched.returncode == 0, benched.stderr
    rows = [line.split()[2:5] for line in benched.stdout.splitlines() if line.startswith("series-mmd (export)  ")]
    assert rows == [["onnxruntime", "fp32", "1"], ["onnxruntime", "fp32", "64"]], benched.stdout


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("generator", "data", "fragments"),
    [
        ("series-mmd", "digits", ("--data digits", "'series-mmd' trains on series data", "'digits' holds image")),
        ("gan", "sines", ("--data sines", "'gan' trains on image data", "'sines' holds series")),
    ],
)
def test_a_data_source_of_another_kind_is_a_one_line_error(
    series_site: Path, tmp_path: Path, generator: str, data: str, fragments: tuple[str, ...]
) -> None:
    refused = run_cli(
        "train", generator, "--data", data, "--out", str(tmp_path / "model"), env={"PYTHONPATH": str(series_site)}
    )
    assert_one_line_error(refused, *fragments)
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_an_export_description_without_the_drivers_input_fails_export_naming_the_graph_and_the_input(
    series_site: Path, tmp_path: Path
) -> None:
    variant = tmp_path / "variant"
    install_fake_distribution(
        variant, "genloom-series-unfed", {"series-unfed": "fake_series_unfed"}, {"fake_series_unfed": UNFED_VARIANT}
    )
    env = {"PYTHONPATH": os.pathsep.join([str(variant), str(series_site)])}
    model, export = tmp_path / "model", tmp_path / "export"
    trained = run_cli("train", "series-unfed", "--data", "sines", "--out", str(model), "--steps", "2", env=env)
    assert trained.returncode == 0, trained.stderr
    refused = run_cli("export", str(model), "--out", str(export), env=env)
    assert_one_line_error(refused, "graph 'decoder' has no input 'noise'", "'series-from-noise' driver needs")
    assert not export.exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_with_no_entry_point_plugin_every_command_runs_on_the_new_kind_and_no_built_in_plugin_is_imported(
    series_site: Path, tmp_path: Path
) -> None:
    model, export = tmp_path / "model", tmp_path / "export"
    commands = [
        ["plugins"],
        ["train", "series-mmd", "--data", "sines", "--out", str(model), "--steps", "20", "--quiet"],
        ["generate", str(model), "-n", "4", "--seed", "0", "--out", str(tmp_path / "made.csv")],
        ["export", str(model), "--out", str(export)],
        ["generate", str(export), "-n", "4", "--seed", "0", "--out", str(tmp_path / "exported.csv")],
        ["bench", str(model), "--repeats", "1"],
        ["eval", str(model), "--data", "sines", "-n", "64"],
    ]
    ran = subprocess.run(
        [sys.executable, "-c", ONLY_THE_NEW_KIND, json.dumps(commands)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(series_site), "GENLOOM_PLUGINS": ""},
        timeout=280,
    )
    assert ran.returncode == 0, ran.stderr
    outcome = json.loads(ran.stdout.splitlines()[-1])
    assert outcome == {"exits": [0] * len(commands), "built_in_modules": []}, ran.stderr
    assert "gan" not in ran.stdout.split("Generators:")[1].split("Data sources")[0]  # only the new kind's generator
    assert np.abs(read_series(tmp_path / "made.csv") - read_series(tmp_path / "exported.csv")).max() <= 1e-4
    bench_paths = {
        " ".join(line.split()[2:4]) for line in ran.stdout.splitlines() if line.startswith("series-mmd (model)  ")
    }
    assert bench_paths == {"genloom torch", "onnxruntime fp32"}, ran.stdout
    assert "mean gap" in ran.stdout and "held-out val_mmd" in ran.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_conformance_kit_passes_on_the_example_generator(series_in_process: Path, tmp_path: Path) -> None:
    from genloom_series.generator import SeriesMMD

    assert get_registry().generator("series-mmd").value is SeriesMMD  # found as the installed entry point
    check_generator(SeriesMMD, data="sines", workdir=tmp_path)


def test_a_data_kind_whose_count_field_is_not_a_sampling_setting_fails_only_its_plugin(site: Path) -> None:
    install_fake_distribution(site, "genloom-rows", {"rows": "fake_rows"}, {"fake_rows": MISCOUNTED_KIND})
    registry = get_registry()
    failed = next(info for info in registry.plugins if info.name == "rows")
    assert "data kind 'rows': count_field 'rows' is not a field of RowSampling" in (failed.error or "")
    kinds = registry.names("data kind")
    assert {"image", "text"} <= set(kinds) and "rows" not in kinds
