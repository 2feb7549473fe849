"""The runtime install: `pip install genloom` with no extra runs exports and never needs torch.

The slow test builds a venv with the runtime install only (a real, non-editable `pip
install` of this checkout), and generates there from an image export and a text export
made in this (the test) venv, through `genloom generate` and `genloom.load`; what it makes
must equal what this venv makes from the same exports and seeds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import genloom
from genloom.errors import NotAvailableError
from genloom.install import require_training_install
from genloom.plugins import get_registry
from tests.conftest import assert_one_line_error, cli_in_process

ROOT = Path(__file__).parents[1]
SOURCES = ("pyproject.toml", "README.md", "sdk", "plugins", "exporters")  # what the distribution is built from
TINY_GAN = {"width": 8, "latent_dim": 8, "batch_size": 16, "sample_every": 0}  # as conftest.TINY_GAN
TINY_GPT = {"width": 32, "layers": 1, "context_length": 32, "batch_size": 8, "vocab_size": 300, "warmup_steps": 2}
PROMPTS = ["The", "A list"]
TEXT_SAMPLING = {"max_new_tokens": 12, "do_sample": True, "seed": 5}
IMAGE_SEED = 3
RUNTIME_SCRIPT = """
import json, sys
import genloom
images = genloom.load(sys.argv[1]).generate(n=4, seed={image_seed})
texts = genloom.load(sys.argv[2]).generate(prompt={prompts!r}, **{text_sampling!r})
print(json.dumps({{"torch_imported": "torch" in sys.modules, "images": images.array.tolist(), "texts": texts.texts}}))
"""


def clean_environment() -> dict[str, str]:
    """This process's environment without what would let another venv's packages in."""
    return {
        name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }


def run_in(bin_dir: Path, program: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run ``program`` (``python``, ``pip``, ``genloom``) of the venv whose scripts are in ``bin_dir``."""
    return subprocess.run(
        [str(bin_dir / program), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_environment(),
        timeout=timeout,
    )


def copy_sources(target: Path) -> None:
    """The files the distribution is built from, without build leftovers (pip builds in the source tree)."""
    target.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
        else:
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def runtime_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scripts folder of a fresh venv (no system site packages) with the runtime install of this checkout only."""
    root = tmp_path_factory.mktemp("runtime-install")
    copy_sources(root / "source")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, env=clean_environment(), timeout=120)
    bin_dir = root / "venv" / "bin"
    installed = run_in(bin_dir, "pip", "install", "--quiet", str(root / "source"), cwd=root, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return bin_dir


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny GAN on digits and a tiny GPT on 20,000 characters of pydoc, trained and exported in this venv."""
    root = tmp_path_factory.mktemp("exports")
    text = root / "docs.txt"
    text.write_text(get_registry().open_data("pydoc").text[:20_000], encoding="utf-8")
    made: dict[str, Path] = {}
    for name, data, config in (("gan", "digits", TINY_GAN), ("gpt", f"text:{text}", TINY_GPT)):
        genloom.train(name, data, root / name, steps=4, progress=False, **config)
        exported = cli_in_process("export", str(root / name), "--out", str(root / f"{name}-onnx"))
        assert exported.returncode == 0, exported.stderr
        made[name], made[f"{name}-onnx"] = root / name, root / f"{name}-onnx"
    return made


def test_require_training_install_names_the_extra_only_when_torch_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    require_training_install("genloom train")  # torch is here: nothing to say
    monkeypatch.setitem(sys.modules, "torch", None)  # what importlib sees when torch is not installed
    with pytest.raises(NotAvailableError, match=r"^genloom train needs PyTorch, .*: pip install 'genloom\[train\]'$"):
        require_training_install("genloom train")


@pytest.mark.timeout(120)
def test_train_without_torch_is_one_line_naming_the_train_extra(tmp_path: Path) -> None:
    """`genloom train` where torch cannot be imported (as in the runtime install): one line, before any data is read."""
    hide_torch = "import sys; sys.modules['torch'] = None; from genloom.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", hide_torch, "train", "gan", "--data", "digits", "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert_one_line_error(result, "genloom train gan needs PyTorch", "pip install 'genloom[train]'")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_runtime_install_has_no_torch(runtime_bin: Path, tmp_path: Path) -> None:
    imported = run_in(runtime_bin, "python", "-c", "import torch", cwd=tmp_path)
    assert imported.returncode != 0 and "No module named 'torch'" in imported.stderr, imported.stderr
    shown = run_in(runtime_bin, "pip", "show", "torch", cwd=tmp_path)
    assert shown.returncode != 0 and "not found: torch" in shown.stderr, (shown.stdout, shown.stderr)
    genloom_shown = run_in(runtime_bin, "pip", "show", "genloom", cwd=tmp_path)
    requires = next(line for line in genloom_shown.stdout.splitlines() if line.startswith("Requires:"))
    assert "onnxruntime-gpu" in requires and "torch" not in requires, requires
    assert "Editable project location" not in genloom_shown.stdout  # a real install, not a link to this checkout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_genloom_generate_in_the_runtime_install_makes_what_this_venv_makes(
    runtime_bin: Path, exports: dict[str, Path], tmp_path: Path
) -> None:
    grid, array = tmp_path / "grid.png", tmp_path / "images.npy"
    image_run = run_in(
        runtime_bin,
        "genloom",
        "generate",
        str(exports["gan-onnx"]),
        "-n",
        "4",
        "--seed",
        str(IMAGE_SEED),
        "--out",
        str(grid),
        "--npy",
        str(array),
        cwd=tmp_path,
    )
    assert image_run.returncode == 0, image_run.stderr
    expected_images = genloom.load(exports["gan-onnx"]).generate(n=4, seed=IMAGE_SEED)
    np.testing.assert_allclose(np.load(array), expected_images.array, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(Image.open(grid), np.int16), np.asarray(expected_images.grid(), np.int16), atol=1
    )

    prompts = [part for prompt in PROMPTS for part in ("--prompt", prompt)]
    text_run = run_in(
        runtime_bin,
        "genloom",
        "generate",
        str(exports["gpt-onnx"]),
        *prompts,
        "--max-new-tokens",
        str(TEXT_SAMPLING["max_new_tokens"]),
        "--do-sample",
        "--seed",
        str(TEXT_SAMPLING["seed"]),
        cwd=tmp_path,
    )
    assert text_run.returncode == 0, text_run.stderr
    expected_texts = genloom.load(exports["gpt-onnx"]).generate(prompt=PROMPTS, **TEXT_SAMPLING).texts
    assert text_run.stdout == "\n----\n".join(expected_texts) + "\n"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_genloom_load_in_the_runtime_install_never_imports_torch(
    runtime_bin: Path, exports: dict[str, Path], tmp_path: Path
) -> None:
    script = RUNTIME_SCRIPT.format(image_seed=IMAGE_SEED, prompts=PROMPTS, text_sampling=TEXT_SAMPLING)
    result = run_in(
        runtime_bin, "python", "-c", script, str(exports["gan-onnx"]), str(exports["gpt-onnx"]), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["torch_imported"] is False
    expected_images = genloom.load(exports["gan-onnx"]).generate(n=4, seed=IMAGE_SEED).array
    np.testing.assert_allclose(np.array(printed["images"], np.float32), expected_images, atol=1e-5)
    assert printed["texts"] == genloom.load(exports["gpt-onnx"]).generate(prompt=PROMPTS, **TEXT_SAMPLING).texts


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_genloom_plugins_in_the_runtime_install_loads_every_builtin_plugin(runtime_bin: Path, tmp_path: Path) -> None:
    result = run_in(runtime_bin, "genloom", "plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "FAILED" not in result.stdout
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert {"gan", "vae", "text", "onnx", "gpt", "lstm", "cgan", "cvae"} <= listed, result.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_training_and_torch_models_in_the_runtime_install_are_one_line_naming_the_train_extra(
    runtime_bin: Path, exports: dict[str, Path], tmp_path: Path
) -> None:
    trained = run_in(
        runtime_bin, "genloom", "train", "gan", "--data", "digits", "--out", str(tmp_path / "m"), cwd=tmp_path
    )
    assert_one_line_error(trained, "needs PyTorch", "pip install 'genloom[train]'")
    generated = run_in(runtime_bin, "genloom", "generate", str(exports["gan"]), "-n", "2", cwd=tmp_path)
    assert_one_line_error(generated, "needs PyTorch", "pip install 'genloom[train]'")
