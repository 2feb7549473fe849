"""The plugin author guide's examples, installed as their own distributions, work through the CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import run_cli

GUIDE = Path(__file__).parents[1] / "docs" / "plugins.md"
SERIES = "genloom-series"
"""The folder of the guide's second example, a plugin of a new kind of data (tested in tests/test_new_kind.py)."""


def guide_files() -> dict[str, str]:
    """The files the guide shows, each marked with ``<!-- file: NAME -->`` above its code block."""
    return dict(re.findall(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```", GUIDE.read_text(), re.S))


def example_files(project: str | None = None) -> dict[str, str]:
    """One example's files by path in its project: those marked ``PROJECT/PATH``, or with ``None`` the first
    example's, marked with bare names."""
    files = {}
    for marked, text in guide_files().items():
        folder, _, path = marked.partition("/")
        if (project is None and not path) or (path and folder == project):
            files[path or marked] = text
    return files


def install_example(files: dict[str, str], root: Path) -> Path:
    """Write ``files`` as a project in ``root`` and pip-install it into ``root/site``, as a third party's
    distribution; the folder to put on PYTHONPATH."""
    project, site = root / "project", root / "site"
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    install = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        "--target",
        str(site),
        str(project),
    ]
    subprocess.run(install, check=True, capture_output=True, text=True, timeout=300)
    return site


def test_the_examples_are_small() -> None:
    assert set(example_files()) == {"pyproject.toml", "genloom_mlpvae.py"}
    assert len(example_files()["genloom_mlpvae.py"].splitlines()) <= 65
    series = example_files(SERIES)
    assert set(series) == {
        "pyproject.toml",
        *(f"genloom_series/{name}.py" for name in ("__init__", "kind", "data", "generator", "runtime")),
    }
    assert all(len(text.splitlines()) <= 100 for text in series.values())


def test_the_guide_example_installs_trains_saves_loads_and_samples(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(install_example(example_files(), tmp_path))}

    listed = run_cli("plugins", env=env)
    assert any(line.split()[:2] == ["mlpvae", "0.1.0"] for line in listed.stdout.splitlines()), listed.stdout
    model = tmp_path / "vae"
    trained = run_cli(
        "train", "mlpvae", "--data", "digits", "--out", str(model), "--steps", "50", "--set", "latent_dim=4", env=env
    )
    assert trained.returncode == 0, trained.stderr
    for name in ("a", "b"):
        made = run_cli(
            "generate",
            str(model),
            "-n",
            "8",
            "--seed",
            "0",
            "--out",
            str(tmp_path / f"{name}.png"),
            "--npy",
            str(tmp_path / f"{name}.npy"),
            env=env,
        )
        assert made.returncode == 0, made.stderr
    images = np.load(tmp_path / "a.npy")
    assert images.shape == (8, 8, 8, 1) and 0 <= images.min() and images.max() <= 1
    np.testing.assert_array_equal(images, np.load(tmp_path / "b.npy"))
    info = run_cli("info", str(model), env=env)
    assert "plugin           mlpvae" in info.stdout and "plugin_version   0.1.0" in info.stdout
