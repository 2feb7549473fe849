"""Every CLI verb on a tiny model of every built-in generator, as a trained directory and as its ONNX export.

The verbs run through the console script's ``main`` in this process (the same code a
shell reaches, without an interpreter start-up per call); ``tests/test_cli.py`` covers
the separate-process paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genloom.plugins import get_registry
from tests.conftest import cli_in_process

IMAGE_TINY = {"width": 8, "latent_dim": 4, "batch_size": 16, "sample_every": 0}
TEXT_TINY = {"width": 32, "layers": 1, "context_length": 32, "batch_size": 8, "vocab_size": 300, "warmup_steps": 2}
GENERATORS = {
    "gan": IMAGE_TINY,
    "cgan": IMAGE_TINY,
    "vae": IMAGE_TINY,
    "cvae": IMAGE_TINY,
    "gpt": TEXT_TINY,
    "lstm": TEXT_TINY,
}
CONDITIONAL = {"cgan", "cvae"}
FORMS = ("trained", "export")
CASES = [(name, form) for name in GENERATORS for form in FORMS]


def ok(*args: str) -> str:
    """Run a verb that must succeed; its stdout."""
    result = cli_in_process(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The data sources: digits for images, 20,000 characters of Python's documentation for text."""
    root = tmp_path_factory.mktemp("matrix")
    text = root / "docs.txt"
    text.write_text(get_registry().open_data("pydoc").text[:20_000], encoding="utf-8")
    return {"root": str(root), "image": "digits", "text": f"text:{text}"}


def data_of(name: str, workspace: dict[str, str]) -> str:
    return workspace["text"] if name in ("gpt", "lstm") else workspace["image"]


@pytest.fixture(scope="module")
def models(workspace: dict[str, str]) -> dict[tuple[str, str], Path]:
    """Each generator trained with `genloom train` and exported with `genloom export`."""
    root = Path(workspace["root"])
    made: dict[tuple[str, str], Path] = {}
    for name, tiny in GENERATORS.items():
        trained, exported = root / name, root / f"{name}-onnx"
        settings = [part for key, value in tiny.items() for part in ("--set", f"{key}={value}")]
        printed = ok(
            "train",
            name,
            "--data",
            data_of(name, workspace),
            "--out",
            str(trained),
            "--steps",
            "6",
            "--quiet",
            *settings,
        )
        assert f"trained '{name}' for 6 steps" in printed and f"model saved in {trained}" in printed
        printed = ok("export", str(trained), "--out", str(exported))
        assert f"exported '{name}' to {exported}" in printed
        made[(name, "trained")], made[(name, "export")] = trained, exported
    return made


@pytest.mark.parametrize("name", list(GENERATORS))
def test_schema_and_plugins_list_every_generator(name: str) -> None:
    schema = json.loads(ok("schema", name))
    assert "steps" in schema["properties"]
    assert json.loads(ok("plugins", "--json"))["generators"][name]["plugin"]


@pytest.mark.parametrize(("name", "form"), CASES)
def test_info(models: dict[tuple[str, str], Path], name: str, form: str) -> None:
    details = json.loads(ok("info", str(models[(name, form)]), "--json"))
    assert details["generator"] == name
    assert (details["kind"], details["backend"]) == (
        ("model", "torch") if form == "trained" else ("export", "onnxruntime")
    )
    assert "generator" in ok("info", str(models[(name, form)]))


@pytest.mark.parametrize(("name", "form"), CASES)
def test_generate(models: dict[tuple[str, str], Path], tmp_path: Path, name: str, form: str) -> None:
    model = models[(name, form)]
    if name in ("gpt", "lstm"):
        printed = ok("generate", str(model), "--prompt", "The", "--prompt", "A list", "--max-new-tokens", "5")
        assert printed.count("----") == 1 and printed.strip()
        streamed = ok("generate", str(model), "--prompt", "The", "--max-new-tokens", "5", "--stream")
        assert streamed.strip()
        return
    labels = ["--labels", "1,2"] if name in CONDITIONAL else []
    ok(
        "generate",
        str(model),
        "-n",
        "4",
        "--seed",
        "3",
        *labels,
        "--out",
        str(tmp_path / "grid.png"),
        "--npy",
        str(tmp_path / "a.npy"),
    )
    images = np.load(tmp_path / "a.npy")
    assert images.shape == (4, 8, 8, 1) and Image.open(tmp_path / "grid.png").size == (
        19,
        19,
    )  # 2x2 tiles of 8 px, 1 px padding
    if form == "export":  # the same seed makes the same images on both backends
        ok(
            "generate",
            str(models[(name, "trained")]),
            "-n",
            "4",
            "--seed",
            "3",
            *labels,
            "--out",
            str(tmp_path / "t.png"),
            "--npy",
            str(tmp_path / "t.npy"),
        )
        np.testing.assert_allclose(images, np.load(tmp_path / "t.npy"), atol=1e-4)


@pytest.mark.parametrize(("name", "form"), CASES)
def test_eval(models: dict[tuple[str, str], Path], workspace: dict[str, str], name: str, form: str) -> None:
    report = json.loads(ok("eval", str(models[(name, form)]), "--data", data_of(name, workspace), "-n", "64", "--json"))
    assert report["backend"] == ("torch" if form == "trained" else "onnxruntime")
    if name in ("gpt", "lstm"):
        assert report["held_out"]["perplexity"] > 1 and report["baselines"]["char_bigram_bits_per_byte"] > 0
        return
    generated = report["generated"]
    assert np.isfinite(generated["frechet_distance"]) and 0 <= generated["precision"] <= 1
    assert (generated["label_accuracy"] is not None) == (name in CONDITIONAL)
    assert "frechet distance" in ok("eval", str(models[(name, form)]), "--data", "digits", "-n", "64")


@pytest.mark.parametrize(("name", "form"), CASES)
def test_bench(models: dict[tuple[str, str], Path], tmp_path: Path, name: str, form: str) -> None:
    out = tmp_path / "bench.json"
    ok("bench", str(models[(name, form)]), "--repeats", "1", "--tokens", "2", "--json", str(out))
    report = json.loads(out.read_text())
    rows = report["images"] or report["text"]
    paths = {row["path"] for row in rows}
    assert "onnxruntime fp32" in paths
    assert any(path.startswith(("torch", "genloom torch")) for path in paths) == (form == "trained")
