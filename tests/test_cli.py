"""The command line as a user sees it: output files, reproducible seeds, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import genloom
from tests.conftest import TINY_GAN, assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "gan"
    result = run_cli("train", "gan", "--data", "digits", "--out", str(out), "--steps", "30", *TINY_GAN)
    assert result.returncode == 0, result.stderr
    assert "trained 'gan' for 30 steps" in result.stdout
    return out


def test_generate_writes_a_grid_and_the_array_and_a_seed_reproduces(model: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = run_cli(
            "generate",
            str(model),
            "-n",
            "9",
            "--seed",
            "5",
            "--out",
            str(tmp_path / f"{name}.png"),
            "--npy",
            str(tmp_path / f"{name}.npy"),
        )
        assert result.returncode == 0, result.stderr
    first, second = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert first.shape == (9, 8, 8, 1) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)
    assert Image.open(tmp_path / "a.png").size == (28, 28)  # 3x3 tiles of 8 px, 1 px padding
    other = genloom.load(model).generate(n=9, seed=6).array
    assert not np.array_equal(first, other)


def test_api_results_carry_images_and_provenance(model: Path) -> None:
    result = genloom.load(model).generate(n=4, seed=1)
    assert [image.size for image in result.images] == [(8, 8)] * 4
    assert result.provenance.generator == "gan" and result.provenance.seed == 1
    assert len(result.provenance.artifact_sha256) == 64


def test_info_describes_the_model(model: Path) -> None:
    result = run_cli("info", str(model), "--json")
    details = json.loads(result.stdout)
    assert (details["generator"], details["backend"], details["training"]["steps"]) == ("gan", "torch", 30)


def test_schema_documents_every_knob() -> None:
    schema = json.loads(run_cli("schema", "gan").stdout)
    assert schema["properties"]["latent_dim"]["default"] == 32
    assert all(field.get("description") for field in schema["properties"].values())


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["train", "gan", "--data", "digits", "--out", "{tmp}/x", "--set", "beta1=2"],
            ["field 'beta1'", "less than 1"],
        ),
        (["train", "gan", "--data", "digits", "--out", "{tmp}/x", "--set", "width"], ["--set expects key=value"]),
        (["train", "gan", "--data", "nowhere", "--out", "{tmp}/x"], ["no data source named 'nowhere'"]),
        (["train", "gan", "--data", "pydoc", "--out", "{tmp}/x"], ["trains on image data", "holds text"]),
        (
            ["train", "gpt", "--data", "digits", "--out", "{tmp}/x"],
            ["--data digits", "'gpt' trains on text data", "holds image"],
        ),
        (
            ["generate", "{model}", "--prompt", "The"],
            ["--prompt: this model makes image; its settings are n, seed, labels"],
        ),
        (["export", "{model}", "--out", "{tmp}/e", "--exporter", "nope"], ["no exporter named 'nope'"]),
        (
            ["export", "{model}", "--out", "{tmp}/e", "--option", "bogus=1"],
            ["--bogus: the 'onnx' exporter takes no such option", "opset, fp16, int8"],
        ),
        (["bench", "{model}", "--exporter", "nope"], ["no exporter named 'nope'"]),
        (["train", "gan", "--out", "{tmp}/x"], ["Missing option '--data'", "genloom train --help"]),
        (["train", "nope", "--data", "digits", "--out", "{tmp}/x"], ["no generator named 'nope'"]),
        (["generate", "{tmp}"], ["is not a genloom model"]),
        (["generate", "{model}", "--labels", "1,2"], ["'gan' is unconditional"]),
        (["generate", "{model}", "-n", "0"], ["Invalid value for '-n'"]),
        (["schema", "nope"], ["no generator named 'nope'"]),
        (["export", "{model}"], ["Missing option '--out'"]),
        (["export", "{model}", "--out", "{tmp}/e", "--opset", "9"], ["opset: 9 is not supported"]),
        (["export", "{model}", "--out", "{tmp}/e", "--exporter", "tflite"], ["no exporter named 'tflite'"]),
        (["bench", "{tmp}"], ["is not a genloom model"]),
        (["eval", "{model}"], ["Missing option '--data'"]),
        (["eval", "{model}", "--data", "digits:16"], ["the model makes 8x8 images", "'digits:16' holds 16x16"]),
        (["eval", "{model}", "--data", "pydoc"], ["makes image", "holds text"]),
    ],
)
def test_bad_input_is_one_line_exit_2_no_traceback(
    model: Path, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    result = run_cli(*(a.format(tmp=tmp_path, model=model) for a in args))
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize("bad", ["--out", "--npy"])
def test_generate_checks_its_output_paths_before_it_writes_anything(model: Path, tmp_path: Path, bad: str) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    paths = {"--out": tmp_path / "grid.png", "--npy": tmp_path / "array.npy", bad: folder}
    result = run_cli("generate", str(model), "--out", str(paths["--out"]), "--npy", str(paths["--npy"]))
    assert_one_line_error(result, bad, "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder"]


def test_generate_into_a_path_below_a_file_is_one_line(model: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert_one_line_error(
        run_cli("generate", str(model), "--out", str(tmp_path / "file" / "grid.png")), "--out", "is a file"
    )


def test_eval_of_a_conditional_model_on_unlabelled_data_says_so_before_any_work(tmp_path: Path) -> None:
    model = tmp_path / "cgan"
    genloom.train(
        "cgan", "digits", model, progress=False, steps=2, width=8, latent_dim=8, batch_size=16, sample_every=0
    )
    images = np.random.default_rng(0).random((40, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "unlabelled.npz", images=images)
    result = run_cli(
        "eval",
        str(model),
        "--data",
        f"npz:{tmp_path / 'unlabelled.npz'}",
        env={"GENLOOM_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert_one_line_error(result, "'cgan' is conditional", "has no labels")
    assert not (tmp_path / "cache").exists()  # no feature classifier was trained first
